"""DatasetError, and the checked text-table reading that raises it.

Both dataset readers share this so every bad input is reported the same way: which file, which
line as a text editor shows it (header = line 1), which column as written, and what was wrong.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MidlevelError

SEPARATORS: dict[str, str] = {",": "comma", ";": "semicolon", "\t": "tab"}
_MISSING = {"", "nan", "na", "n/a", "null", "none"}


class DatasetError(MidlevelError, ValueError):
    """A dataset file that cannot be read as documented; the message says where and why."""

    def __init__(self, path, problem: str, *, line: int | None = None, column: str | None = None):
        self.path = Path(path)
        self.line = line
        self.column = column
        self.problem = problem
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")


def normalise_name(name: str) -> str:
    """'ID at file source ' -> 'id_at_file_source': header case and spacing vary between copies."""
    return re.sub(r"[\W_]+", "_", name.strip().lower()).strip("_")


@dataclass
class Table:
    """A parsed text table: header as written and normalised, cells as stripped strings, lines."""

    path: Path
    sep: str
    header_line: int
    raw: list[str]
    names: list[str]
    rows: list[list[str]]
    lines: list[int]

    def error(self, problem: str, line: int | None = None, name: str | None = None) -> DatasetError:
        column = None if name is None else self.raw[self.names.index(name)]
        return DatasetError(self.path, problem, line=line, column=column)

    def rename(self, aliases: dict[str, str]) -> None:
        """Map header aliases to canonical names; two headers meaning one column is an error."""
        seen: dict[str, int] = {}
        for i, name in enumerate(self.names):
            canonical = aliases.get(name, name)
            if canonical in seen:
                first = self.raw[seen[canonical]]
                raise DatasetError(
                    self.path,
                    f"columns {first!r} and {self.raw[i]!r} both mean {canonical!r}",
                    line=self.header_line,
                )
            seen[canonical] = i
            self.names[i] = canonical

    def require(self, needed: tuple[str, ...], aliases: dict[str, str] | None = None) -> None:
        missing = [n for n in needed if n not in self.names]
        if missing:
            also = "".join(f"; {raw!r} is accepted for {name!r}" for raw, name in (aliases or {}).items())
            raise DatasetError(
                self.path,
                f"missing column(s) {missing}; found {self.raw}; needed {list(needed)}"
                f" (case and spaces in headers do not matter{also})",
                line=self.header_line,
            )

    def cells(self, name: str) -> list[str]:
        i = self.names.index(name)
        return [row[i] for row in self.rows]

    def ids(self, name: str, parse: Callable[[str], object] = str) -> list:
        """Identifiers: present, parseable by ``parse`` (ValueError = invalid) and unique."""
        first: dict[object, int] = {}
        problems: list[tuple[int, str]] = []
        for text, line in zip(self.cells(name), self.lines):
            if not text:
                problems.append((line, "missing id"))
                continue
            try:
                key = parse(text)
            except ValueError:
                problems.append((line, f"{text!r} is not a valid id"))
                continue
            if key in first:
                problems.append((line, f"duplicate id {text!r} (first on line {first[key]})"))
                continue
            first[key] = line
        if problems:
            raise self._column_error(problems, name, "id")
        return list(first)

    def _column_error(self, problems: list[tuple[int, str]], name: str, what: str) -> DatasetError:
        """The first bad cell of a column, with the lines of the others (every bad cell in one message)."""
        line, problem = problems[0]
        others = [str(n) for n, _ in problems[1:]]
        if others:
            shown = ", ".join(others[:12]) + (", ..." if len(others) > 12 else "")
            problem += f" ({len(others)} more bad {what}(s) in this column, on line(s) {shown})"
        return self.error(problem, line, name)

    def parse_float(self, text: str) -> float | None:
        """A cell as a float: NaN when missing, None when not a number. ';' files may use decimal commas."""
        if text.lower() in _MISSING:
            return math.nan
        if self.sep != ",":
            text = text.replace(",", ".")
        try:
            return float(text)
        except ValueError:
            return None

    def numbers(self, name: str, scale: tuple[float, float] | None = None) -> np.ndarray:
        """A column of ratings as floats; every cell must be a number (within ``scale``)."""
        values = np.full(len(self.rows), math.nan)
        problems: list[tuple[int, str]] = []
        for k, (text, line) in enumerate(zip(self.cells(name), self.lines)):
            value = self.parse_float(text)
            if value is None:
                problems.append((line, f"{text!r} is not a number"))
            elif math.isnan(value):
                problems.append((line, f"missing value {text!r}" if text else "missing value"))
            elif scale is not None and not scale[0] <= value <= scale[1]:
                problems.append((line, f"{value:g} is outside the scale {scale[0]:g}-{scale[1]:g}"))
            else:
                values[k] = value
        if problems:
            raise self._column_error(problems, name, "value")
        return values


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 first: its little-endian mark starts with UTF-16's


def _decode(path: Path) -> str:
    """The file's text: UTF-8 (with or without a byte-order mark), UTF-16 or UTF-32 (as spreadsheet
    programs save "Unicode text"; with a mark, or without one when every other byte is 0), else Latin-1."""
    data = path.read_bytes()
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None and len(data) >= 4 and b"\0" in data[:200]:
        head = data[:200 - 200 % 2]
        if head[1::2].count(0) > len(head) // 4 and not head[0::2].count(0):
            encoding = "utf-16-le"
        elif head[0::2].count(0) > len(head) // 4 and not head[1::2].count(0):
            encoding = "utf-16-be"
        else:
            raise DatasetError(path, "not a text file (it holds NUL bytes); save the table as CSV (UTF-8)")
    if encoding is not None:
        try:
            return data.decode(encoding).removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            raise DatasetError(path, f"looks like {encoding.upper()} text but byte {exc.start} is not; "
                               "save the table as CSV (UTF-8)") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_text(path, missing: str = "file not found") -> str:
    """A dataset's text file decoded as ``_decode`` does; refused in one line when it is missing (``missing``
    says what it should have been), not a file, or empty."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, missing if not path.exists() else "not a file")
    text = _decode(path)
    if not text.strip():
        raise DatasetError(path, "file is empty")
    return text


def read_table(path, sep: str | None = None) -> Table:
    """Parse a delimited text file. ``sep=None`` sniffs comma, semicolon or tab from the header;
    a fixed ``sep`` that leaves a single column holding another separator is reported as wrong."""
    path = Path(path)
    text = read_text(path)
    if sep is None:
        header = next(line for line in text.splitlines() if line.strip())
        sep = max(SEPARATORS, key=header.count)
    records: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    end = 0
    for record in reader:
        start, end = end + 1, reader.line_num
        cells = [cell.strip() for cell in record]
        if any(cells):
            records.append((start, cells))
    header_line, raw = records[0]
    table = Table(path, sep, header_line, raw, [], [], [])
    if len(raw) == 1:
        other = next((s for s in SEPARATORS if s != sep and s in raw[0]), None)
        if other is not None:
            raise DatasetError(
                path,
                f"the header is a single column containing {SEPARATORS[other]}s: the file looks"
                f" {SEPARATORS[other]}-separated but is read as {SEPARATORS[sep]}-separated",
                line=header_line,
            )
    if len(records) == 1:
        raise DatasetError(path, "no data rows below the header", line=header_line)
    for line, cells in records[1:]:
        if len(cells) > len(raw) and any(cells[len(raw):]):
            raise DatasetError(
                path,
                f"{len(cells)} fields but the header has {len(raw)}"
                " (an unquoted separator or decimal comma in a value?)",
                line=line,
            )
        table.rows.append((cells + [""] * len(raw))[: len(raw)])
        table.lines.append(line)
    _drop_blank_columns(table)
    return table


def _drop_blank_columns(table: Table) -> None:
    """Trailing separators in spreadsheet exports leave empty, unnamed columns; drop those,
    and name any other unnamed column by its position."""
    keep = [i for i, head in enumerate(table.raw) if head or any(row[i] for row in table.rows)]
    table.raw = [table.raw[i] for i in keep]
    table.rows = [[row[i] for i in keep] for row in table.rows]
    table.names = [normalise_name(head) or f"unnamed_{i + 1}" for i, head in zip(keep, table.raw)]
