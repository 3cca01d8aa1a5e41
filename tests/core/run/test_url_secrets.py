"""Credentials in URLs are masked wherever a URL is written."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.url_secrets import mask_urls, masked_url, url_secrets
from airflow_claude_batch.exceptions import InputError
from airflow_claude_batch.hooks.clients import keep_url_secrets_out_of_http_logs


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@gateway:8080/api", "http://***@gateway:8080/api"),
        ("https://tok3n@gw.example.com", "https://***@gw.example.com"),
        ("https://gw/x?key=abc123&page=2", "https://gw/x?key=***&page=2"),
        ("https://gw/x?api_key=abc&Token=def", "https://gw/x?api_key=***&Token=***"),
        (
            "https://bucket.s3.amazonaws.com/r.jsonl?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff00",
            "https://bucket.s3.amazonaws.com/r.jsonl?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("https://api.anthropic.com", "https://api.anthropic.com"),
        ("s3://bucket/runs/dag", "s3://bucket/runs/dag"),
        # ObjectStoragePath writes its connection id there: a name, not a secret.
        ("s3://aws_default@bucket/runs", "s3://aws_default@bucket/runs"),
        ("s3://AKIA1:wJalr-secret@bucket/runs", "s3://***@bucket/runs"),
        ("not a url", "not a url"),
    ],
)
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert masked_url(url) == shown
    for secret in url_secrets(url):
        assert secret not in shown


def test_every_url_in_a_text_is_masked() -> None:
    text = (
        "connection 'c' was rejected by http://u:pw-123@gw:1/v1 (see 'https://gw/r?token=t-456'); "
        "and https://api.anthropic.com is fine"
    )
    masked = mask_urls(text)
    assert "pw-123" not in masked
    assert "t-456" not in masked
    assert "https://api.anthropic.com is fine" in masked
    assert set(url_secrets("http://u:pw-123@gw:1/v1")) >= {"pw-123", "u:pw-123"}


def test_http_request_log_lines_never_hold_a_url_secret(caplog: pytest.LogCaptureFixture) -> None:
    keep_url_secrets_out_of_http_logs()
    for name in ("httpx", "httpx2", "anthropic._base_client"):
        caplog.set_level(logging.DEBUG, logger=name)
        logging.getLogger(name).info('HTTP Request: GET %s "HTTP/1.1 200 OK"', "https://s/r?sig=SIGN-789")
    assert caplog.text.count("sig=***") == 3
    assert "SIGN-789" not in caplog.text


def test_a_storage_uri_with_credentials_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    storage = Path(tmp_path)
    assert RunFolder.for_run(storage, "d", "r", "p").root == storage / "d" / "r" / "p"

    class Credentialed(type(Path())):  # type: ignore[misc]
        def __str__(self) -> str:
            return "https://user:hunter2@store.example.com/runs"

    with pytest.raises(InputError, match="storage_conn_id") as refused:
        RunFolder.for_run(Credentialed(tmp_path), "d", "r", "p")
    assert "hunter2" not in str(refused.value)
