"""The notifier wakes exactly the waiting users an event concerns, whichever side
(the users told, or the users waiting) it walks."""

from homeserver.sync.notifier import Notifier


def test_a_big_set_of_users_wakes_only_those_waiting() -> None:
    notifier = Notifier()
    alice = notifier.register("@alice:hs")
    bob = notifier.register("@bob:hs")
    carol = notifier.register("@carol:hs")
    members = {f"@u{i}:hs" for i in range(1000)} | {"@alice:hs", "@carol:hs"}
    notifier.notify_users(members)  # more users told than waiting: walks the waiting
    assert (alice.woken, bob.woken, carol.woken) == (True, False, True)
    assert notifier.wakeups == 2


def test_a_small_set_or_a_list_wakes_its_users() -> None:
    notifier = Notifier()
    waiters = [notifier.register(f"@u{i}:hs") for i in range(10)]
    notifier.notify_users({"@u1:hs", "@nobody:hs"})
    notifier.notify_users(["@u2:hs", "@u2:hs"])
    assert [w.woken for w in waiters] == [i in (1, 2) for i in range(10)]
    assert notifier.wakeups == 2
