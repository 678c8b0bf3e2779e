"""Pieces the bulk management commands share (imports, key generation, apply/export).

- ``load_yaml``: a YAML file with exact decimals and no silently repeated keys.
- ``validation_messages`` / ``ErrorReport``: validation errors named by their place in the
  input file (``model_list[1].litellm_params.api_key: ...``, ``row 7, models: ...``), all
  reported at once as one ``CommandError``.
- ``ProgressBar``: a dependency-free progress bar for stderr.
- ``SecretCsv``: a CSV of secrets, private (mode 0600) from its first byte, that appears at its
  path only when the command succeeds.
- ``team_by_reference``: a team by id or alias (plus organization when the alias is shared).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, OutputWrapper
from django.db.models import Q
from rest_framework.exceptions import ValidationError as DRFValidationError

from hierarchy.actors import ActorLike, as_actor
from hierarchy.models import Team
from hierarchy.selectors import teams_visible_to

MAX_REPORTED_ERRORS = 50
NON_FIELD_KEYS = ("__all__", "non_field_errors")

MSG_FILE_MISSING = "{path}: no such file."
MSG_FILE_UNREADABLE = "{path}: cannot be read ({reason})."
MSG_YAML_INVALID = "{path}, line {line}, column {column}: {problem}"
MSG_YAML_DUPLICATE_KEY = "found the key '{key}' twice in one mapping"
MSG_OUT_EXISTS = "{path} already exists: choose another file or pass --force to replace it."
MSG_OUT_NO_DIRECTORY = "{path}: the directory {directory} does not exist."
MSG_OUT_IS_DIRECTORY = "{path} is a directory."
MSG_OUT_APPEARED = "{path} appeared while the command ran; nothing was changed."
MSG_TEAM_UNKNOWN = "No team '{team}'."
MSG_TEAM_UNKNOWN_IN_ORG = "No team '{team}' in organization '{organization}'."
MSG_TEAM_AMBIGUOUS = (
    "'{team}' names {count} teams (organizations: {organizations}): "
    "give the team's id or its organization."
)


# --- YAML ------------------------------------------------------------------------------------


# libyaml's parser where PyYAML has it (a 2 MB file loads about five times faster), else
# PyYAML's own; both with the safe constructor below.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ConfigLoader(_SafeLoader):
    """PyYAML's safe loader with floats as exact Decimals and repeated keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, MSG_YAML_DUPLICATE_KEY.format(key=key), key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _exact_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        value = Decimal(text)
    except InvalidOperation:  # .inf, .nan, 1:30 (sexagesimal): PyYAML's own reading
        return loader.construct_yaml_float(node)  # type: ignore[no-untyped-call]
    return value if value.is_finite() else loader.construct_yaml_float(node)  # type: ignore[no-untyped-call]


_ConfigLoader.add_constructor("tag:yaml.org,2002:float", _exact_float)


def load_yaml(path: Path) -> Any:
    """The document in ``path``. Errors name the line and column but never quote the file's
    text, which may hold a secret."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandError(MSG_FILE_MISSING.format(path=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CommandError(MSG_FILE_UNREADABLE.format(path=path, reason=reason)) from None
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader: builds no objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise CommandError(
            MSG_YAML_INVALID.format(
                path=path,
                line=mark.line + 1 if mark else "?",
                column=mark.column + 1 if mark else "?",
                problem=exc.problem or "not valid YAML",
            )
        ) from None
    except yaml.YAMLError:
        raise CommandError(MSG_FILE_UNREADABLE.format(path=path, reason="not valid YAML")) from None


# --- errors named by their place in a file ---------------------------------------------------


def join_path(base: str, key: str | int) -> str:
    """``model_list`` + 1 → ``model_list[1]``; ``model_list[1]`` + ``model`` → ``...].model``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if not base or key in NON_FIELD_KEYS:
        return base or ("" if key in NON_FIELD_KEYS else key)
    return f"{base}.{key}"


def validation_messages(error: Any, path: str = "") -> list[tuple[str, str]]:
    """(place, message) pairs of a Django or DRF validation error, nested fields joined with
    dots and list items with ``[i]``; errors not about one field keep ``path`` itself."""
    if isinstance(error, ValidationError):
        if hasattr(error, "error_dict"):
            return validation_messages(error.message_dict, path)
        return [(path, message) for message in error.messages]
    if isinstance(error, DRFValidationError):
        return validation_messages(error.detail, path)
    if isinstance(error, dict):
        return [
            pair
            for key, value in error.items()
            for pair in validation_messages(value, join_path(path, str(key)))
        ]
    if isinstance(error, list):
        if all(isinstance(item, str) for item in error):
            return [(path, str(item)) for item in error]
        return [
            pair
            for index, item in enumerate(error)
            if item
            for pair in validation_messages(item, join_path(path, index))
        ]
    return [(path, str(error))]


class ErrorReport:
    """Every problem found in one input, raised together (in the order of the places they
    point at: ``position``, e.g. a row number) so that one round of fixes is enough."""

    def __init__(self, source: str | Path) -> None:
        self.source = str(source)
        self._lines: list[tuple[int, int, str]] = []

    def __bool__(self) -> bool:
        return bool(self._lines)

    @property
    def lines(self) -> list[str]:
        return [line for _, _, line in sorted(self._lines)]

    def add(self, line: str, position: int = 0) -> None:
        self._lines.append((position, len(self._lines), line))

    def add_error(self, error: Any, place: Callable[[str], str], position: int = 0) -> None:
        """Add each message of ``error`` as ``place(field path): message``."""
        for field_path, message in validation_messages(error):
            self.add(f"{place(field_path)}: {message}", position)

    def raise_if_any(self) -> None:
        if not self._lines:
            return
        shown = self.lines[:MAX_REPORTED_ERRORS]
        count = len(self._lines)
        more = count - len(shown)
        body = "\n".join(f"  {line}" for line in shown)
        if more:
            body += f"\n  ... and {more} more"
        raise CommandError(
            f"{self.source}: {count} error{'s' if count != 1 else ''}, nothing was changed:\n{body}"
        )


# --- progress --------------------------------------------------------------------------------


def _plain(text: str) -> str:
    return text


class ProgressBar:
    """``label [#####-----] 120/1000 12%`` redrawn in place on a terminal; on a file or a
    pipe, one line at every tenth, so logs stay short."""

    WIDTH = 30

    def __init__(self, stream: OutputWrapper, total: int, label: str) -> None:
        self.stream = stream
        self.total = total
        self.label = label
        self.done = 0
        self.tty = stream.isatty()
        self._shown: tuple[int, int] | None = None

    def advance(self, step: int = 1) -> None:
        self.done = min(self.total, self.done + step)
        self._draw()

    def finish(self) -> None:
        self._draw()
        if self.tty:
            self.stream.write("", style_func=_plain)

    def _draw(self) -> None:
        percent = 100 * self.done // self.total if self.total else 100
        if self.tty:
            state = (self.done * self.WIDTH // max(self.total, 1), percent)
            if state == self._shown:
                return
            filled = state[0]
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            line = f"\r{self.label} [{bar}] {self.done}/{self.total} {percent}%"
            self.stream.write(line, style_func=_plain, ending="")
            self.stream.flush()
        else:
            state = (percent // 10, 0)
            if state == self._shown or (self.done < self.total and percent < 10):
                return
            self.stream.write(f"{self.label}: {self.done}/{self.total} ({percent}%)", _plain)
        self._shown = state


def with_progress(
    items: Sequence[Any], stream: OutputWrapper, label: str
) -> Iterator[tuple[int, Any]]:
    """``enumerate(items)`` that advances a progress bar after each item."""
    bar = ProgressBar(stream, len(items), label)
    for index, item in enumerate(items):
        yield index, item
        bar.advance()
    bar.finish()


# --- files that hold secrets -----------------------------------------------------------------


def check_output_path(path: Path, *, force: bool) -> None:
    """A file a command may write: not a directory, in an existing one, and an existing file
    only with ``force``."""
    if path.is_dir():
        raise CommandError(MSG_OUT_IS_DIRECTORY.format(path=path))
    if os.path.lexists(path) and not force:
        raise CommandError(MSG_OUT_EXISTS.format(path=path))
    if not path.parent.is_dir():
        raise CommandError(MSG_OUT_NO_DIRECTORY.format(path=path, directory=path.parent))


class SecretCsv:
    """A CSV file of secrets (e.g. new keys' plaintext).

    Rows go to a private temporary file beside ``path`` (created with mode 0600, so no other
    user can ever read it); ``publish`` moves it to ``path`` and, when the command fails
    afterwards or before, the file is removed: the secrets reach ``path`` only with the
    objects they belong to. Without ``force`` an existing ``path`` is never replaced.
    Use as ``with SecretCsv(...) as out, transaction.atomic(): ... out.publish()`` so that a
    failing commit removes the published file too.
    """

    def __init__(self, path: Path, header: Iterable[str], *, force: bool = False) -> None:
        self.path = path
        self.force = force
        self.published = False
        check_output_path(path, force=force)
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".part"
        )
        os.fchmod(descriptor, 0o600)
        self.temporary = Path(temporary)
        self.file = os.fdopen(descriptor, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        self.writer.writerow(list(header))

    def writerow(self, row: Iterable[Any]) -> None:
        self.writer.writerow(list(row))

    def publish(self) -> None:
        """Flush to disk and put the file at ``path`` (atomically; never over an existing
        file unless ``force``)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if self.force:
            os.replace(self.temporary, self.path)
        else:
            try:
                os.link(self.temporary, self.path)
            except FileExistsError:
                raise CommandError(MSG_OUT_APPEARED.format(path=self.path)) from None
            self.temporary.unlink()
        self.published = True

    def discard(self) -> None:
        self.file.close()
        self.temporary.unlink(missing_ok=True)
        if self.published:
            self.path.unlink(missing_ok=True)
            self.published = False

    def __enter__(self) -> SecretCsv:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None or not self.published:
            self.discard()


# --- natural keys ----------------------------------------------------------------------------


def team_by_reference(reference: str, *, actor: ActorLike, organization: str = "") -> Team:
    """The team whose id is ``reference``, or whose alias it is (Decision 2); when teams of
    several organizations share the alias, ``organization`` (alias or id) picks one.
    Raises ``ValidationError`` with a message for the user."""
    teams = teams_visible_to(as_actor(actor)).select_related("organization")
    if organization:
        teams = teams.filter(Q(organization__alias=organization) | Q(organization__pk=organization))
    by_id = teams.filter(pk=reference).first()
    if by_id is not None:
        return by_id
    matches = list(teams.filter(alias=reference)[:10])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        if organization:
            raise ValidationError(
                MSG_TEAM_UNKNOWN_IN_ORG.format(team=reference, organization=organization)
            )
        raise ValidationError(MSG_TEAM_UNKNOWN.format(team=reference))
    names = sorted(t.organization.alias if t.organization else "(none)" for t in matches)
    raise ValidationError(
        MSG_TEAM_AMBIGUOUS.format(
            team=reference, count=len(matches), organizations=", ".join(names)
        )
    )
