"""The edge package runs on the Pi without TensorFlow: importing all of it must not pull TensorFlow or Keras."""

import subprocess
import sys

CODE = """
import pkgutil, importlib, sys, edge
for module in pkgutil.walk_packages(edge.__path__, "edge."):
    importlib.import_module(module.name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(len(list(pkgutil.walk_packages(edge.__path__, "edge."))), heavy)
assert not heavy, heavy
"""


def test_edge_never_imports_tensorflow_or_keras():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    modules, heavy = result.stdout.split(" ", 1)
    assert int(modules) >= 10 and heavy.strip() == "[]"
