"""``make demo`` keeps working: the demo prints one complete event and no noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "podcast_demo.py"


def test_demo_prints_one_complete_upload_event() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Sentry received 1 event(s)" in out
    assert "POST /api/podcasts/123/upload -> 500 (X-Request-ID: req-abc-def)" in out
    assert '"request_id": "req-abc-def"' in out
    assert '"podcast_id": "123"' in out
    assert '"id": "user-123"' in out
    assert "[upload] validated upload" in out
    assert '"authorization": "[Filtered]"' in out
