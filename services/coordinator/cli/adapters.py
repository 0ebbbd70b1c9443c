"""`seal-lab adapters list | show KEY | export KEY DIR [--push-to-hub REPO]`: the coordinator's published
adapters, read through its API (`api/routes/adapters.py`), exported as a folder peft, vLLM and LoRAX load."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from seal_lab.formats.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_FILES,
    ADAPTER_PREFIX,
    ADAPTER_WEIGHTS,
    adapter_digest,
)
from seal_lab.store import content_digest

from .api_client import CoordinatorError, check, console, fail, out, session

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Published adapters: list them, show one, export one to a folder or the Hugging Face Hub.",
)

# The same option as the other commands' (main.py): the token comes from the same settings (api_client.connect).
Url = Annotated[
    str,
    typer.Option("--url", envvar="SEAL_COORDINATOR_URL", help="coordinator base URL"),
]
DEFAULT_URL = "http://127.0.0.1:8000"
HUB_MISSING = "--push-to-hub needs the hub extra: pip install 'seal-lab[hub]'"


def _name(key: str) -> str:
    """The route's name for an adapter: its sha256 (a whole key `adapters/<sha256>` is accepted too)."""
    return key.removeprefix(f"{ADAPTER_PREFIX}/")


@app.command("list")
def list_adapters(
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    after: Annotated[str, typer.Option(help="start after this key (the last of the previous page)")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: Url = DEFAULT_URL,
) -> None:
    """List published adapters: key, base model, dataset."""
    with session(url, timeout=30) as client:
        page = check(client.get("/v1/adapters", params={"limit": limit, "after": after}))
    if as_json:
        out.print_json(json.dumps(page))
        return
    for adapter in page["adapters"]:
        out.print(f"{adapter['key']}  {adapter['base_model'] or '?'}  {adapter['dataset_key'] or ''}")
    if page["next_after"]:
        console.print(f"more: seal-lab adapters list --after {page['next_after']}")


@app.command()
def show(key: str, url: Url = DEFAULT_URL) -> None:
    """Show an adapter: its peft config, its seal_adapter.json and its files."""
    with session(url, timeout=30) as client:
        detail = check(client.get(f"/v1/adapters/{_name(key)}"))
    out.print_json(json.dumps(detail))


@app.command()
def export(
    key: str,
    directory: Path,
    push_to_hub: Annotated[
        str | None,
        typer.Option(help="also upload the folder to this Hugging Face model repo (OWNER/NAME)"),
    ] = None,
    private: Annotated[bool, typer.Option(help="create the Hub repo private")] = True,
    url: Url = DEFAULT_URL,
) -> None:
    """Write an adapter's files into DIRECTORY (peft's folder: PeftModel.from_pretrained loads it), checked
    against its key; optionally push the folder to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)."""
    with session(url, timeout=300) as client:
        detail = check(client.get(f"/v1/adapters/{_name(key)}"))
        directory.mkdir(parents=True, exist_ok=True)  # an OSError: one line from `session`
        # Into a scratch folder first: DIRECTORY gets the files only once they match the key.
        with tempfile.TemporaryDirectory(prefix=".seal-export-", dir=directory) as scratch:
            names = [name for name in detail["files"] if name in ADAPTER_FILES]  # no made-up name
            for name in names:
                _download(client, f"/v1/adapters/{_name(key)}/files/{name}", Path(scratch, name))
            _check_digest(detail["key"], Path(scratch))
            for name in names:
                Path(scratch, name).replace(directory / name)
    console.print(f"adapter {detail['key']} written to {directory} ({', '.join(detail['files'])})")
    if push_to_hub:
        url_pushed = push_folder(directory, push_to_hub, private, f"seal-lab adapter {detail['key']}")
        console.print(f"pushed to {url_pushed}")


def _download(client: httpx.Client, route: str, path: Path) -> None:
    """Stream one file to `path`."""
    with client.stream("GET", route) as response:
        if response.status_code >= 400:
            response.read()
            check(response)
        with path.open("wb") as handle:
            for chunk in response.iter_bytes():
                handle.write(chunk)


def _check_digest(key: str, directory: Path) -> None:
    """An adapter's key is the sha256 of its weights and config: a copy that does not match is refused."""
    expected = content_digest(key)
    if expected is None:
        return
    found = adapter_digest(
        (directory / ADAPTER_WEIGHTS).read_bytes(), (directory / ADAPTER_CONFIG).read_bytes()
    )
    if found != expected:
        raise CoordinatorError(f"the downloaded files of {key} do not match its key (sha256 {found})")


def push_folder(directory: Path, repo: str, private: bool, message: str) -> Any:
    """Create the model repo if needed and upload the folder (huggingface_hub, imported only here)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        fail(HUB_MISSING)
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo, folder_path=str(directory), repo_type="model", commit_message=message
        )
    except Exception as exc:  # huggingface_hub's HTTP and validation errors: one line, no trace
        fail(f"pushing to {repo} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    return getattr(info, "commit_url", None) or f"https://huggingface.co/{repo}"
