import pytest
import torch

from variant.data.procedural import CLASS_NAMES
from variant.studio.classes import (
    class_choices,
    class_names,
    imagenet_class_names,
    labels_for,
    resolve_classes,
)


def test_imagenet_names_ship_in_index_order():
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 998  # 'crane' and 'maillot' come twice
    assert (names[0], names[1], names[207], names[388], names[980], names[999]) == (
        "tench", "goldfish", "golden retriever", "giant panda", "volcano", "toilet tissue")
    assert names.index("crane") == 134 and names.index("crane", 135) == 517


def test_names_per_model():
    assert class_names(1000) == imagenet_class_names()
    assert class_names(10, {"dataset": "built-in Shapes-10 (procedural, 64 px)"}) == CLASS_NAMES
    assert class_names(4, {"training": {"dataset": "procedural"}}) == CLASS_NAMES[:4]
    assert class_names(3, {"class_names": ["a", "b", "c"]}) == ("a", "b", "c")
    assert class_names(3) == ("class 0", "class 1", "class 2")


def test_the_packaged_builtin_model_gets_shape_names(studio):
    assert studio.class_names == CLASS_NAMES
    assert class_choices(studio.class_names)[2] == ("ring (2)", 2)


def test_resolve_classes_by_id_name_or_label():
    names = imagenet_class_names()
    assert resolve_classes([207, "388", "Volcano", "golden retriever (207)", "crane (517)"],
                           names) == [207, 388, 980, 207, 517]
    with pytest.raises(ValueError, match=r"ambiguous \(classes \[134, 517\]\); pick it by id"):
        resolve_classes(["crane"], names)
    with pytest.raises(ValueError, match=r"unknown class 'unicorn'.*id \(0\.\.999\)"):
        resolve_classes(["unicorn"], names)
    with pytest.raises(ValueError, match=r"class 1000 does not exist: this model has 1000"):
        resolve_classes([1000], names)


def test_labels_cycle_or_match_variant_sample_without_labels():
    assert labels_for([3, 5], 5, 10, seed=0) == [3, 5, 3, 5, 3]
    g = torch.Generator().manual_seed(7)  # what `variant sample --seed 7` draws without --labels
    assert labels_for([], 4, 10, seed=7) == torch.randint(0, 10, (4,), generator=g).tolist()
