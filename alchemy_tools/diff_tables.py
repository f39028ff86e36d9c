"""The IAM and security-group tables of `cdk diff`, row by row, each marked widening or narrowing.

The CLI draws these tables with box characters; one row may span several lines (one action or
resource a line): a line with a sign starts a row, a line without one continues it, and ``├───┼``
rules may separate rows. Whether a row widens access depends
on its sign and, for IAM statements, its effect: an added ``Allow`` or a removed ``Deny`` widens,
an added ``Deny`` or a removed ``Allow`` narrows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

IAM_STATEMENTS = "IAM Statement Changes"
IAM_POLICIES = "IAM Policy Changes"
SECURITY_GROUPS = "Security Group Changes"
TABLE_SECTIONS = (IAM_STATEMENTS, IAM_POLICIES, SECURITY_GROUPS)

Direction = Literal["widening", "narrowing", "unclear"]


@dataclass(frozen=True)
class TableRow:
    """One row of a security table: its sign, its cells by column title, and what it does to access."""

    section: str
    sign: str
    """``+`` added, ``-`` removed."""
    cells: tuple[tuple[str, str], ...]
    """(column title, cell lines joined by newlines), in the CLI's column order."""

    def cell(self, title: str) -> str:
        return dict(self.cells).get(title, "")

    @property
    def direction(self) -> Direction:
        if self.sign not in "+-" or not self.sign:
            return "unclear"
        adds = self.sign == "+"
        if self.section == IAM_STATEMENTS and self.cell("Effect").strip() == "Deny":
            adds = not adds
        return "widening" if adds else "narrowing"


def parse_tables(lines: Sequence[str]) -> list[TableRow]:
    """Every row of the IAM and security-group tables in one stack's diff lines."""
    rows: list[TableRow] = []
    section = ""
    titles: list[str] = []
    current: list[list[str]] | None = None
    for line in lines:
        if line in TABLE_SECTIONS:
            section, titles, current = line, [], None
            continue
        if not section:
            continue
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            if not titles:
                titles = cells
            elif current is None or cells[0]:
                # A sign in the first column starts a row; a line without one continues it.
                if current is not None:
                    rows.append(_row(section, titles, current))
                current = [[cell] if cell else [] for cell in cells]
            else:
                for column, cell in enumerate(cells):
                    if cell and column < len(current):
                        current[column].append(cell)
        elif line.startswith(("├", "└")):
            if current is not None and titles:
                rows.append(_row(section, titles, current))
            current = None
            if line.startswith("└"):
                section = ""
    return rows


def _row(section: str, titles: list[str], columns: list[list[str]]) -> TableRow:
    sign = "".join(columns[0]).strip() if columns else ""
    cells = tuple((title, "\n".join(column)) for title, column in zip(titles[1:], columns[1:], strict=False))
    return TableRow(section, sign, cells)


_MARKS: dict[Direction, str] = {"widening": "🔺 widening", "narrowing": "🔻 narrowing", "unclear": "❔ unclear"}


def render_tables(rows: Sequence[TableRow]) -> list[str]:
    """Markdown: one table per section, widening rows first, each row marked."""
    lines: list[str] = []
    for section in TABLE_SECTIONS:
        in_section = [row for row in rows if row.section == section]
        if not in_section:
            continue
        in_section.sort(key=lambda row: row.direction != "widening")
        titles = [title for title, _ in in_section[0].cells]
        widening = sum(1 for row in in_section if row.direction == "widening")
        lines += [
            f"**{section}**: {widening} widening, {len(in_section) - widening} narrowing",
            "",
            "| Access | " + " | ".join(titles) + " |",
            "|---|" + "---|" * len(titles),
        ]
        for row in in_section:
            cells = [_markdown_cell(row.cell(title)) for title in titles]
            lines.append(f"| {_MARKS[row.direction]} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _markdown_cell(text: str) -> str:
    """Each line of a cell as code, lines joined by ``<br>``; pipes escaped for the table."""
    return "<br>".join(f"`{part}`" for part in text.replace("|", "\\|").splitlines() if part)
