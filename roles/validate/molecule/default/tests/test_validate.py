"""The validate scenario leaves the host as it found it: the service is back and nothing was added."""

from __future__ import annotations

from typing import Any


def test_service_is_running_after_the_scenario(host: Any) -> None:
    assert host.service("airgap-llm-web").is_running


def test_no_samples_copied_without_transcription_or_ocr_services(host: Any) -> None:
    assert not host.file("/var/lib/airgap-llm/validate").exists
