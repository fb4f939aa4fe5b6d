"""`dgss push DIR org/name`: upload an exported model folder to the Hugging Face Hub.

A thin wrapper over ``huggingface_hub.upload_folder`` (log in first with ``hf auth login`` or set
``HF_TOKEN``); it checks that ``DIR`` is a dgss model folder, creates the repository if needed
(``create_repo(exist_ok=True)``, private with ``private=True``) and uploads every file in one commit.
Not tested here (no network): kept this thin on purpose.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import HubError
from .resolve import CONFIG_FILE, MODEL_FILE, parse_hub_reference


def push_model_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    message: str = "Upload dgss model",
) -> str:
    """Upload ``folder`` to the model repository ``repo_id``; returns the commit URL."""
    folder = Path(folder)
    for f in (MODEL_FILE, CONFIG_FILE, "README.md"):
        if not (folder / f).is_file():
            raise HubError(f"{folder} is not a dgss model folder (no {f}); write one with `dgss export-model`")
    repo_id, _ = parse_hub_reference(repo_id)
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = upload_folder(
        repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision, commit_message=message
    )
    return str(getattr(info, "commit_url", info))
