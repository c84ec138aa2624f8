"""Which Dify the simulator plays: 1.14 (recorded on a real server, the default) or 1.17.

1.17 mode reproduces DIFY.md's "Newer Dify (1.15–1.17)" section, which comes from Dify's
documentation and source, not from recordings: more Human Input input types, `submitted_data` on
`human_input_form_filled`, and `reasoning_chunk` events from LLM nodes. Everything else is shared.
"""
from __future__ import annotations

from dataclasses import dataclass

# Form input types each version's Human Input node accepts. `text_input` is the 1.13 name that the
# 1.14 editor still wrote; the 1.15 docs replaced it by paragraph/select/file/file-list.
BASE_FORM_INPUT_TYPES = ("text_input", "paragraph")
NEWER_FORM_INPUT_TYPES = ("select", "file", "file-list")


@dataclass(frozen=True)
class DifyVersion:
    name: str  # as given on the command line: "1.14" or "1.17"
    release: str  # the X-Version header and /v1/info of that release
    form_input_types: tuple[str, ...]  # in Dify's enum order (validation messages list them so)
    reasoning_chunks: bool  # LLM nodes stream `reasoning_chunk` events before their node_finished
    form_filled_carries_submitted_data: bool  # `human_input_form_filled.data.submitted_data`

    @property
    def newer(self) -> bool:
        return self.name != "1.14"


VERSIONS = {
    "1.14": DifyVersion("1.14", "1.14.1", BASE_FORM_INPUT_TYPES, reasoning_chunks=False,
                        form_filled_carries_submitted_data=False),
    "1.17": DifyVersion("1.17", "1.17.1", BASE_FORM_INPUT_TYPES + NEWER_FORM_INPUT_TYPES, reasoning_chunks=True,
                        form_filled_carries_submitted_data=True),
}
DEFAULT_VERSION = "1.14"


def dify_version(name: str) -> DifyVersion:
    try:
        return VERSIONS[name]
    except KeyError:
        raise ValueError(f"unknown Dify version {name!r}: choose one of {', '.join(VERSIONS)}") from None
