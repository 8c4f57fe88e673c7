"""Upload a finished export to the Hugging Face Hub with `huggingface_hub` (create the repo, upload the
folder in one commit): only an export whose verification passed, only with credentials.

The token is huggingface_hub's own (`$HF_TOKEN`, else the file `hf auth login` writes). A push is an
explicit request to reach the Hub, so `HF_HUB_OFFLINE` — which the Makefile sets so that no stage
downloads a model silently — does not block it.
"""

from __future__ import annotations

import json
from pathlib import Path

from export.chain import ExportError

RECORD = "export.json"
# the export stage's own bookkeeping stays local: it names paths on this machine
NOT_UPLOADED = ["config.yaml", "provenance.json", "*.tmp"]


def check_pushable(folder: Path) -> dict:
    """The export record of a finished export whose checks all passed; otherwise one line saying why not."""
    path = folder / RECORD
    if not path.is_file():
        raise ExportError(f"refusing to push {folder}: no {RECORD} (not a finished export)")
    record = json.loads(path.read_text())
    failed = [] if record["verification"]["passed"] else ["the merged model against the adapter chain"]
    failed += [name for name, kind in (record.get("kinds") or {}).items() if not kind["check"]["passed"]]
    if failed:
        raise ExportError(f"refusing to push {folder}: its verification failed ({', '.join(failed)}; see {path})")
    return record


def check_credentials() -> None:
    """One line naming HF_TOKEN when huggingface_hub finds no token (checked before any work)."""
    from huggingface_hub import get_token

    if not get_token():
        raise ExportError("push_to_hub: no Hugging Face credentials: set HF_TOKEN to a write token "
                          "(or run `hf auth login`)")


def push(folder: str | Path, repo: str, *, endpoint: str | None = None, private: bool = True) -> str:
    """Create `repo` (if missing) and upload the export folder with its card; returns the commit URL."""
    import huggingface_hub
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    record = check_pushable(folder)
    check_credentials()
    token = get_token()
    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = False
    try:
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=folder, repo_id=repo, repo_type="model", ignore_patterns=NOT_UPLOADED,
                                   commit_message=f"rlhfkit export {record['name']} ({record['dtype']})")
    except (HfHubHTTPError, ValueError) as err:  # ValueError: the Hub found the card's metadata invalid
        raise ExportError(f"push_to_hub: {repo}: {str(err).splitlines()[0]}") from None
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = offline
    return commit.commit_url
