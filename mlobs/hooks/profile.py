"""Analysis profiles: which components of a run are required (orchestration notes §2).

By default every component in the profile is required (fail-fast); a component is
best-effort only when the profile names it optional. A profile's explicit choice wins over
the ``required=`` a component declares in code.

A profile may also declare the models its components use (``models``, by
``ModelRef.name``): ``mlobs licenses check --profile MODULE:ATTRIBUTE`` checks them against
the model license inventory (``MODEL_LICENSES.md``) before any run has recorded them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mlobs.core.checks import check_word
from mlobs.core.errors import ConfigError
from mlobs.core.limits import NAME_MAX_CHARS


@dataclass(frozen=True)
class AnalysisProfile:
    """A named profile.

    Args:
        name: the profile name recorded on the run (``runs.profile``).
        optional: components that are best-effort in this profile.
        required: components that are required even if their code says ``required=False``.
        models: names of the models the profile's components use (``ModelRef.name``, e.g.
            ``"openai/whisper-small"``); a declaration only, read by ``mlobs licenses
            check``, never by the recorder.

    Raises:
        ConfigError: a component is named both optional and required; ``models`` is a
            single string or holds a name that is not a non-empty string.
    """

    name: str
    optional: frozenset[str] = field(default_factory=frozenset)
    required: frozenset[str] = field(default_factory=frozenset)
    models: frozenset[str] = field(default_factory=frozenset)

    def __init__(self, name: str, optional: Iterable[str] = (),
                 required: Iterable[str] = (), models: Iterable[str] = ()) -> None:
        check_word("profile name", name, NAME_MAX_CHARS)
        optional_set, required_set = frozenset(optional), frozenset(required)
        both = sorted(optional_set & required_set)
        if both:
            raise ConfigError(f"components both optional and required in profile {name!r}: {both}")
        if isinstance(models, str):  # a bare name would become a set of characters
            raise ConfigError(f"models of profile {name!r} must be a collection of model "
                              f"names, got the string {models!r:.60}")
        if not isinstance(models, Iterable):
            raise ConfigError(f"models of profile {name!r} must be a collection of model "
                              f"names, got {models!r:.60}")
        model_set = frozenset(check_word("model name", m, NAME_MAX_CHARS) for m in models)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "optional", optional_set)
        object.__setattr__(self, "required", required_set)
        object.__setattr__(self, "models", model_set)

    def is_required(self, component: str, declared: bool | None) -> bool:
        """The profile's choice, else the component's own declaration, else True."""
        if component in self.optional:
            return False
        if component in self.required:
            return True
        return True if declared is None else declared
