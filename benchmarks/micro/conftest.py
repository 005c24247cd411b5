import sys
from pathlib import Path

# the plain-Python models live with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
