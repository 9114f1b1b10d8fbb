"""The widget's JavaScript unit tests (js/test, node's test runner) as part of the suite."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).parent.parent / "js"


def test_the_reducer_over_recorded_event_streams():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("NODE IS MISSING under CI: the widget's unit tests cannot run (apt-get install nodejs)")
        pytest.skip("!!! JS UNIT TESTS SKIPPED: node is not installed (apt-get install nodejs) !!!")
    done = subprocess.run([node, "--test", "test/"], cwd=JS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout
