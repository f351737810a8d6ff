"""What the run store knows of its outbox items: which to delete, trim or look up, and once."""

from __future__ import annotations

from flowcraft.sqs._outbox import OutboxBook, Plan


def _book() -> OutboxBook:
    book = OutboxBook()
    book.saved("r1", "02", ["m1", "m2", "m3"])
    book.saved("r1", "03", ["m4"])
    return book


def test_an_item_all_of_whose_messages_go_is_deleted_once() -> None:
    book = _book()
    plan = book.plan("r1", ["m3", "m1", "m2"])
    assert plan == Plan(deletes=("02",))
    book.done("r1", plan)
    assert book.plan("r1", ["m1", "m2", "m3"]) == Plan()  # the next save's sent, the commit's
    assert book.plan("r1", ["m4", "m1"]) == Plan(deletes=("03",))


def test_an_item_keeping_some_messages_is_trimmed_then_deleted_with_the_rest() -> None:
    book = _book()
    plan = book.plan("r1", ["m1", "m2"])
    assert plan == Plan(trims={"02": ("m1", "m2")})
    book.done("r1", plan)
    assert book.plan("r1", ["m3"]) == Plan(deletes=("02",))


def test_ids_of_no_known_item_are_unknown_until_found_absent() -> None:
    book = _book()
    assert book.plan("r1", ["m1", "x"]).unknown == ("x",)
    assert book.plan("r2", ["m1", "m1"]) == Plan(unknown=("m1",))
    book.absent("r2", ["m1"])
    assert book.plan("r2", ["m1"]) == Plan()


def test_a_plan_not_done_changes_nothing() -> None:
    book = _book()
    book.plan("r1", ["m4"])  # a refused save
    assert book.plan("r1", ["m4"]) == Plan(deletes=("03",))


def test_a_load_replaces_what_the_book_held_and_a_message_saved_again_is_wanted_again() -> None:
    book = _book()
    book.done("r1", book.plan("r1", ["m4"]))
    book.loaded("r1", {"02": ["m2"], "05": ["m4", "m5"], "06": []})
    assert book.plan("r1", ["m1", "m2", "m4"]) == Plan(deletes=("02",), trims={"05": ("m4",)},
                                                      unknown=("m1",))  # fmt: skip
    book.done("r1", book.plan("r1", ["m5"]))
    book.saved("r1", "07", ["m5"])
    assert book.plan("r1", ["m5"]) == Plan(deletes=("07",))


def test_the_least_recently_used_runs_are_forgotten_past_the_capacity() -> None:
    book = OutboxBook(capacity=2)
    for run in ("r1", "r2", "r3"):
        book.saved(run, "02", ["m"])
    assert book.plan("r1", ["m"]) == Plan(unknown=("m",))
    assert book.plan("r3", ["m"]) == Plan(deletes=("02",))
