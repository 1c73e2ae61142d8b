"""The Azure OpenAI backend: OpenAI's backend through the openai SDK's AzureOpenAI client.

Azure fine-tunes the same models through the same API shape (files, fine_tuning.jobs, events,
checkpoints; the same statuses), so everything but the client is the OpenAI backend's: the run
tagged with our id, the create never retried blindly, uploads cached per resource. The client
reads AZURE_OPENAI_ENDPOINT (the resource, e.g. https://NAME.openai.azure.com), the key from
AZURE_OPENAI_API_KEY (sent as `api-key`) and OPENAI_API_VERSION (sent as `api-version` on every
request). A fine-tuned model answers (`ftm generate`) once deployed under a deployment named
after it: deploying is a control-plane call, outside this API.
"""

from __future__ import annotations

import os

from ftm_backends.openai import OpenAIBackend
from ftmanager.errors import Refused

DEFAULT_API_VERSION = "2025-04-01-preview"


class AzureOpenAIBackend(OpenAIBackend):
    """Fine-tuning jobs on an Azure OpenAI resource."""

    name = "azure"
    description = ("Azure OpenAI fine-tuning (OpenAI's API shape) via AZURE_OPENAI_ENDPOINT, "
                   f"AZURE_OPENAI_API_KEY and OPENAI_API_VERSION (default {DEFAULT_API_VERSION})")
    provider, key_env, url_env, default_base_url = "Azure OpenAI", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", ""
    client_class = "AzureOpenAI"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.api_version = os.environ.get("OPENAI_API_VERSION") or DEFAULT_API_VERSION

    def account_of(self) -> str:
        return f"{self.where} (Azure OpenAI resource)"  # files belong to the resource

    def client_settings(self) -> dict:
        """The AzureOpenAI client's: the resource's endpoint and the API version it speaks."""
        if not self.base_url:
            raise Refused(f"no Azure OpenAI resource: {self.url_env} is not set",
                          f"Set {self.url_env} to https://<resource>.openai.azure.com.")
        return {"azure_endpoint": self.base_url, "api_version": self.api_version, "timeout": self.timeout,
                "max_retries": self.max_retries}

    def _denied(self, err, run_id: str | None) -> Refused:
        """A 403 from Azure is about this key's rights, not a shutdown."""
        return Refused(f"Azure OpenAI denied permission (403 at {self.where}): {self._said(err)}",
                       "Check that the key's resource has fine-tuning access (Cognitive Services OpenAI "
                       "Contributor) in a region that fine-tunes this model.")
