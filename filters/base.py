"""What a filter is: one class, its options as fields, one method that judges rows.

As in datatrove, each filter is a small class whose instances are configured once (here a
pydantic model: the fields are the options of a filter plan's entry, checked, unknown keys
refused) and one method, `decide`, that says of each row of a batch whether it stays. The
pipeline streams the rows through the filters in order and writes every row a filter drops,
with its reason, to the `removed` config:

    class Shouting(Filter):
        name = "shouting"
        max_share: float = Field(0.5, ge=0, le=1)

        def decide(self, rows: Rows) -> list[str | None]:
            return [f"{share:.0%} capitals" if share > self.max_share else None
                    for share in map(capitals, rows.texts(self.column_name, self.roles))]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distill.config import cli
from distill.filters.text import DEFAULT_ROLES

if TYPE_CHECKING:
    from distill.filters.rows import Rows

DEFAULT_COLUMN = "messages"


class Filter(BaseModel):
    """A filter. `decide(rows)` returns, per row, None to keep it or why it is dropped.

    A filter sees the rows every earlier filter kept, in input order (train splits first),
    a batch at a time, or all at once when `whole` is set (dedup: a row is a duplicate only
    once every row has been seen). One instance judges one sequence of rows: state kept
    between batches (ROUGE's growing pool) belongs to that sequence, and the pipeline gives
    each run a fresh copy."""

    model_config = ConfigDict(extra="forbid")

    name: ClassVar[str] = ""
    whole: ClassVar[bool] = False  # decide() gets every row at once
    reads_column: ClassVar[bool] = True  # the pipeline checks `column` exists before the first batch

    column: str | None = Field(None, description="The column it reads; a chat's turns of --roles are joined.",
                               json_schema_extra=cli(show="the plan's column, messages"))
    roles: tuple[str, ...] = Field(DEFAULT_ROLES, description="Which turns of a chat count, comma-separated.",
                                   json_schema_extra=cli(show=",".join(DEFAULT_ROLES)))

    @field_validator("roles", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @property
    def column_name(self) -> str:
        return self.column or DEFAULT_COLUMN

    def decide(self, rows: Rows) -> list[str | None]:
        raise NotImplementedError
