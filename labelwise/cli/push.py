"""labelwise push RUN REPO_ID: upload a run's timm/Hub folder and model card to the Hugging Face Hub.

The repository gets what `timm.create_model("hf-hub:REPO_ID", pretrained=True)` reads (config.json,
model.safetensors), the model card as README.md, and labelwise's own files under labelwise/.
Offline, it stops within seconds with a plain message instead of waiting for timeouts.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import typer

from labelwise.errors import BundleError, ConfigError, LabelwiseError

NETWORK_TIMEOUT_S = 3.0
_EXTRA_FILES = ("model.json", "metrics.json", "config.yaml", "evaluation.json", "history.csv")


class PushError(LabelwiseError):
    """The upload could not happen (offline, no token, refused)."""


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def reachable(url: str, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Can a TCP connection to the URL's host be opened within ``timeout`` s?"""
    from labelwise.models.backbones import _reachable

    parsed = urlparse(url)
    return _reachable(parsed.hostname or "", parsed.port or (443 if parsed.scheme != "http" else 80), timeout)


def stage(run: Path, repo_id: str, into: Path) -> list[str]:
    """Lay out what goes to the Hub in ``into``; returns the file names."""
    from labelwise.models import hub
    from labelwise.models.card import hub_status, render_card

    hub_dir = run / hub.HUB_DIR
    if not (hub_dir / hub.CONFIG_FILE).is_file():
        _, why = hub_status(run)
        raise BundleError(f"{run}: no {hub.HUB_DIR}/ folder (timm's layout) to push: {why}")
    for name in (hub.CONFIG_FILE, hub.WEIGHTS_FILE):
        shutil.copy2(hub_dir / name, into / name)
    arch, note = hub_status(run)
    (into / "README.md").write_text(render_card(run, arch, note, timm_source=f"hf-hub:{repo_id}"), encoding="utf-8")
    (into / "labelwise").mkdir()
    for name in _EXTRA_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, into / "labelwise" / name)
    return sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file())


def push(run: Path, repo_id: str, *, private: bool = False, token: str | None = None,
         message: str = "Upload labelwise model") -> str:
    """Upload RUN to the model repository ``repo_id`` (created if missing); returns its URL."""
    if "/" not in repo_id or repo_id.count("/") > 1 or not all(repo_id.split("/")):
        raise ConfigError(f"REPO_ID {repo_id!r}: use the form user/name or organisation/name")
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ConfigError("`labelwise push` needs huggingface_hub: pip install labelwise[hub]") from None
    with tempfile.TemporaryDirectory(prefix="labelwise-push-") as tmp:
        files = stage(Path(run), repo_id, Path(tmp))  # a bad run fails before any network access
        endpoint = _endpoint()
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise PushError("HF_HUB_OFFLINE is set: nothing was uploaded; unset it on a machine with internet access")
        if not reachable(endpoint):
            raise PushError(f"cannot reach {endpoint} (offline?): nothing was uploaded; run `labelwise push` "
                            "again on a machine with internet access (the run directory is all it needs)")
        api = HfApi(endpoint=endpoint, token=token)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(folder_path=tmp, repo_id=repo_id, repo_type="model", commit_message=message)
        except Exception as e:  # HTTP errors (401 without a token, 403, ...): one line, no traceback
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise PushError(f"upload to {repo_id} failed: {first}; log in with `hf auth login` or set HF_TOKEN") from None
    return f"{url} ({len(files)} files)"


def push_command(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train` (with its hub/ folder)."),
    repo_id: str = typer.Argument(..., help="Hugging Face model repository, user/name (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    token: Optional[str] = typer.Option(None, "--token", envvar="HF_TOKEN", show_default=False,
                                        help="Hugging Face access token (default: HF_TOKEN or `hf auth login`)."),
) -> None:
    """Upload a run to the Hugging Face Hub: timm's config.json + model.safetensors, the model card, labelwise's files."""
    from labelwise.cli.console import out

    url = push(run, repo_id, private=private, token=token or None)
    out.print(f"pushed {run} -> {url}; load it with timm.create_model('hf-hub:{repo_id}', pretrained=True)")
