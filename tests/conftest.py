"""Test-session setup: the decoded-image cache goes to a temporary folder, never the user's home."""
import os
import tempfile

os.environ["LABELWISE_CACHE_DIR"] = tempfile.mkdtemp(prefix="labelwise-test-cache-")
