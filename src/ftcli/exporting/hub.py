"""Pushing an export to the Hugging Face Hub: checked before any work (repo id, offline mode, a token),
and every failure the Hub client raises turned into a UserError with a hint."""

from __future__ import annotations

from pathlib import Path

from ftcli.errors import UserError, first_line


def check_hub_ready(repo_id: str, token: str | None) -> None:
    """Fail before exporting when a push cannot work: a bad repo id, offline mode, no token."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"--push-to-hub {repo_id!r} is not a valid repo id: {first_line(exc)}",
                        hint="use NAME or NAMESPACE/NAME (letters, digits, '-', '_', '.')") from None
    if constants.HF_HUB_OFFLINE:
        raise UserError("cannot push to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE)",
                        hint="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to push")
    if token is None and get_token() is None:
        raise UserError("cannot push to the Hugging Face Hub: no token found",
                        hint="log in with `hf auth login`, or set HF_TOKEN to a token with write access")


def push_error(repo_id: str, exc: Exception) -> UserError:
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError, OfflineModeIsEnabled

    first = first_line(exc)
    if isinstance(exc, LocalTokenNotFoundError):
        return UserError("cannot push to the Hugging Face Hub: no token found",
                         hint="log in with `hf auth login`, or set HF_TOKEN to a token with write access")
    if isinstance(exc, OfflineModeIsEnabled):
        return UserError("cannot push to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE)",
                         hint="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to push")
    if isinstance(exc, HFValidationError):
        return UserError(f"--push-to-hub {repo_id!r} is not a valid repo id: {first}")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            return UserError(f"the Hugging Face Hub refused the token while pushing to {repo_id} (401)",
                             hint="log in again with `hf auth login`, or set HF_TOKEN to a valid token")
        if status == 403:
            return UserError(f"no write access to {repo_id} on the Hugging Face Hub (403)",
                             hint="use a token with write permission for that namespace")
        return UserError(f"pushing to {repo_id} failed: {first}")
    # No connection: the HTTP client's transport errors (connect, read timeouts, DNS) or the OS's.
    if isinstance(exc, OSError) or any(c.__name__ == "TransportError" for c in type(exc).__mro__):
        return UserError(f"cannot reach the Hugging Face Hub to push {repo_id}: {first}",
                         hint="check the network connection (or HF_ENDPOINT), then run the export again")
    return UserError(f"pushing to {repo_id} failed: {type(exc).__name__}: {first}")


def push_folder(folder: Path, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str | None = None) -> tuple[str, str]:
    """Create the model repo if needed and upload `folder` into it; (repo id, url). Hub failures
    (no token, offline, HTTP errors, no network) become UserError with a hint."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        # private=None leaves an existing repo's visibility (and the namespace default) alone.
        created = api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
        real_id = getattr(created, "repo_id", None) or repo_id
        api.upload_folder(repo_id=real_id, folder_path=str(folder), repo_type="model",
                          commit_message=commit_message or "Upload model exported by ftcli")
    except Exception as exc:  # everything the Hub client raises is about the network, the token or the repo
        raise push_error(repo_id, exc) from None
    url = getattr(created, "url", None) or f"https://huggingface.co/{real_id}"
    return real_id, str(url)
