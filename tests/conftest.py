import sys
from pathlib import Path

import torch

# tests/golden_weights.py is shared by the fixture generator and the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(min(2, torch.get_num_threads()))
