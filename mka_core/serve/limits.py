"""The server's bounds: what one request may ask for and how big an upload may be."""

from __future__ import annotations

from dataclasses import dataclass, field

MB = 1024 * 1024


def _default_upload_bytes() -> dict[str, int]:
    return {"audio": 50 * MB, "image": 20 * MB, "video": 200 * MB}


@dataclass(frozen=True)
class Limits:
    """Safe defaults; ``mka serve`` flags override the upload size and the queue length."""

    #: Largest upload per kind, in bytes.
    upload_bytes: dict[str, int] = field(default_factory=_default_upload_bytes)
    #: Largest JSON request body.
    json_bytes: int = 1 * MB
    #: Jobs waiting (not counting the one running) before new ones are refused.
    queue_length: int = 32
    #: Inputs (prompts, images, videos) in one request.
    inputs: int = 8
    #: Characters in one prompt.
    prompt_chars: int = 2000
    #: Candidates per input.
    candidates: int = 8
    #: Sampler steps.
    steps: int = 1000
    #: Boxes in one inpainting mask.
    mask_boxes: int = 64
    #: Finished jobs kept in the history (older ones are forgotten, their files removed).
    history: int = 200
    #: Seconds a request body may stall (no bytes arriving) before it is refused with 408 and
    #: what arrived is removed, so a client that stops sending cannot hold a half-written upload.
    body_idle_seconds: float = 120.0

    def with_upload_megabytes(self, megabytes: float | None) -> Limits:
        """The same limits with every upload kind capped at ``megabytes``."""
        if megabytes is None:
            return self
        cap = int(megabytes * MB)
        return Limits(**{**self.__dict__, "upload_bytes": {k: cap for k in self.upload_bytes}})

    def to_json(self) -> dict:
        return {
            "upload_bytes": dict(self.upload_bytes),
            "json_bytes": self.json_bytes,
            "queue_length": self.queue_length,
            "inputs": self.inputs,
            "prompt_chars": self.prompt_chars,
            "candidates": self.candidates,
            "steps": self.steps,
            "mask_boxes": self.mask_boxes,
        }
