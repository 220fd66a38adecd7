"""The Message explorer as an operator uses it: a SID, a whole number typed any way, the last
4 digits the masked pages show, and drill-downs from the other pages; readable timelines."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analytics.queries import Search
from tests.test_dashboard import app, goto, sql  # noqa: F401 (app is a fixture)


@pytest.mark.parametrize(("typed", "kind", "value"), [
    ("SM" + "ab" * 16, "sid", "SM" + "ab" * 16),
    ("  sm0ABC ", "sid_prefix", "SM0abc"),
    ("+1 (415) 555-0123", "number", "+14155550123"),
    ("14155550123", "number", "+14155550123"),
    ("0123", "digits", "0123"),
    ("•••2200", "digits", "2200"),
    ("error:30003", "error", "30003"),
    ("carrier: Verizon Wireless", "carrier", "Verizon Wireless"),
    ("country:GB", "country", "GB"),
    ("sender:+15005550006", "sender", "+15005550006"),
    ("   ", "empty", ""),
])
def test_search_reads_what_people_type(typed: str, kind: str, value: str) -> None:
    assert Search.parse(typed) == Search(kind, value)


def unique_suffix_number(data_dir: Path) -> tuple[str, int]:
    """A number whose last 4 digits no other number shares, and its event count."""
    [(phone, n)] = sql(data_dir, """
        SELECT e.phone, count(*) FROM events e
        WHERE e.phone IN (SELECT phone FROM numbers
                          WHERE right(phone, 4) IN (SELECT right(phone, 4) FROM numbers
                                                    GROUP BY 1 HAVING count(*) = 1))
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1""")
    return str(phone), int(n)


def page_text(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.subheader, *at.warning)]
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(str(p) for p in parts)


def test_last_four_digits_find_the_number_masked(app: AppTest, snapshot_dir: Path) -> None:
    phone, n = unique_suffix_number(snapshot_dir)
    goto(app, "explorer")
    app.text_input(key="explore").input("•••" + phone[-4:]).run()
    assert not app.exception, app.exception
    line = app.dataframe[0].value
    assert len(line) == n
    assert "•••" + phone[-4:] in app.subheader[0].value
    assert phone not in page_text(app)          # masked everywhere on the page
    assert "None" not in set(line.astype(str).to_numpy().ravel())


def test_whole_number_without_plus(app: AppTest, snapshot_dir: Path) -> None:
    phone, n = unique_suffix_number(snapshot_dir)
    goto(app, "explorer")
    app.text_input(key="explore").input(phone.lstrip("+")).run()
    assert len(app.dataframe[0].value) == n


def test_timeline_has_readable_labels_and_both_times(app: AppTest, snapshot_dir: Path) -> None:
    [(sid, n)] = sql(snapshot_dir, "SELECT message_sid, count(*) FROM events "
                                   "WHERE type = 'message.sent' AND message_sid IN "
                                   "(SELECT message_sid FROM events WHERE status = 'delivered')"
                                   " GROUP BY 1 ORDER BY 1 LIMIT 1")
    goto(app, "explorer")
    app.text_input(key="explore").input(sid).run()
    line = app.dataframe[0].value
    assert list(line.columns[:3]) == ["When", "Stored", "What"]
    assert "Sent to Twilio" in set(line["What"])
    assert not any(str(t).startswith(("message.", "contact.")) for t in line["What"])
    assert line["When"].notna().all() and line["Stored"].notna().all()


def test_drill_down_from_an_error_code(app: AppTest, snapshot_dir: Path) -> None:
    [(code, n)] = sql(snapshot_dir, "SELECT error_code, count(*) FROM messages "
                                    "WHERE error_code IS NOT NULL GROUP BY 1 "
                                    "ORDER BY 2 DESC LIMIT 1")
    # What a click on the Errors page's row does: a request for the explorer, then the page.
    app.session_state["explore_request"] = f"error:{code}"
    goto(app, "explorer")
    listed = app.dataframe[0].value
    assert len(listed) == min(int(n), 200)
    assert set(listed["Error"]) == {str(code)}
    assert app.text_input(key="explore").value == f"error:{code}"


def test_last_digits_shared_by_several_numbers_offer_a_choice(app: AppTest,
                                                              snapshot_dir: Path) -> None:
    rows = sql(snapshot_dir, "SELECT right(phone, 2) AS d, count(*) FROM numbers "
                             "GROUP BY 1 HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 1")
    if not rows:
        pytest.fail("the simulated world should have numbers sharing their last 2 digits")
    digits, count = rows[0]
    goto(app, "explorer")
    app.text_input(key="explore").input(str(digits)).run()
    pick = app.selectbox(key="explore_pick")
    assert len(pick.options) == min(int(count), 50)
    assert all(o.startswith("•••") for o in pick.options)
    assert len(app.dataframe) == 1     # the first number's timeline is shown


def test_drill_down_to_a_number_keeps_it_masked(app: AppTest, snapshot_dir: Path) -> None:
    phone, n = unique_suffix_number(snapshot_dir)
    # What a click on the Unreachable numbers page does with masking on.
    app.session_state["explore_pinned"] = phone
    app.session_state["explore_request"] = "•••" + phone[-4:]
    goto(app, "explorer")
    assert app.text_input(key="explore").value == "•••" + phone[-4:]
    assert len(app.dataframe[0].value) == n
    assert phone not in page_text(app)
