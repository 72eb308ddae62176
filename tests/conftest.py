import sys
from pathlib import Path

import torch

# tests/golden_weights.py and tests/helpers.py are shared by several test modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(min(2, torch.get_num_threads()))
