"""SentRows: a page's rows reach a worker equal to what was sent, however deep they nest."""

from __future__ import annotations

import pickle
from typing import Any

from crm_audit_adapters.page_pool.sent_rows import SentRows, flat_table, rebuilt


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


class TestSentRows:
    def test_rows_pickle_back_as_the_plain_list(self) -> None:
        """Usual rows go through pickle unchanged and come back as a list equal to the one sent."""
        rows = [(1, "Crm::Person", {"name": ["a", "b"], "n": 2.5}, None)]
        assert pickle.loads(pickle.dumps(SentRows(rows))) == rows

    def test_rows_nested_past_the_recursion_limit_arrive_whole(self) -> None:
        """A value pickle cannot recurse through is sent flat and rebuilt to the same depth."""
        rows = [(4, {"first_name": nested(3_000)})]
        back = pickle.loads(pickle.dumps(SentRows(rows)))
        value, depth = back[0][1]["first_name"], 0
        while isinstance(value, dict):
            value, depth = value["a"], depth + 1
        assert (back[0][0], depth, value) == (4, 3_001, 1)

    def test_the_flat_table_keeps_shared_and_cyclic_containers(self) -> None:
        """A container met twice is one object again, and a list holding itself still does."""
        shared: list[Any] = [1]
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        made = rebuilt(flat_table([(shared, (2, shared)), cyclic]))
        assert made[0][0] is made[0][1][1]
        assert made[1][0] is made[1]
        assert made[0] == ([1], (2, [1]))
