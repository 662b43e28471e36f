"""``make demo`` keeps working: one complete event in the local store, and no noise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "podcast_demo.py"


def test_demo_stores_and_shows_one_complete_upload_event() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "ASGI_SENTRY_CTX_"))}
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "events stay in the local store" in out
    assert "POST /api/podcasts/123/upload -> 500 (X-Request-ID: req-abc-def)" in out
    listing = [line for line in out.splitlines() if "req=req-abc-def" in line]
    assert len(listing) == 1  # the 404 was noise: the upload is the only event
    assert "user=user-123" in listing[0]
    assert re.search(r"request_id\s+req-abc-def", out)
    assert re.search(r"user\s+id=user-123", out)
    assert re.search(r"business\s+podcast_id=123 action=upload", out)
    assert "validated upload" in out
    assert "StorageError: GCS upload failed" in out
    assert "token-123" not in out  # the bearer token never reached the event
