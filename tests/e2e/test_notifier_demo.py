"""What `make run` shows a newcomer: the notifier's email and webhook go to local sinks that print
the card with its decision links (demo/sinks.py); opening the printed Approve link and confirming
lets the run finish, and the outcome is printed too."""
from __future__ import annotations

import re
import threading

import httpx
import pytest

from demo.sinks import LocalSinks, with_notifier
from demo.stack import ProcessStack, free_port
from tests.e2e.harness import E2E, wait_for

pytestmark = pytest.mark.e2e


def test_the_demo_prints_a_notification_whose_link_decides_the_run(tmp_path, rabbitmq_url):
    stack = ProcessStack(tmp_path, rabbitmq_url=rabbitmq_url)
    said: list[str] = []  # what the sinks print in `make run`, in the order they print it
    sinks = with_notifier(stack, LocalSinks(smtp_port=free_port(), webhook_port=free_port(), say=said.append))
    try:
        with stack:
            stack.start("notifier")
            e2e = E2E(stack)
            e2e.register()
            run = e2e.start_run("the demo")

            def seen() -> str:
                return "".join(block + "\n\n" for block in said)

            def link() -> str | None:
                email = re.search(r"\[email → reviewers@demo\.local\] \[Review\] Review needed: draft\n"
                                  r"(?:    .*\n)*?    Approve: (http://\S+/decide/\S+)", seen())
                return email.group(1) if email and "[webhook] checkpoint.opened: Review needed: draft" in seen() \
                    else None

            url = wait_for(link, 60, "the printed notification")
            page = httpx.get(url, timeout=10)
            assert page.status_code == 200 and "Confirm: approve" in page.text
            done = httpx.post(url, data={"token": url.rsplit("/", 1)[1]}, timeout=30)
            assert done.status_code == 200 and "Decision recorded" in done.text
            assert run.result(timeout=60)["data"]["status"] == "succeeded"
            wait_for(lambda: "    Approved by alice via email at " in seen(), 30, "the outcome printed")
            e2e.close()
    finally:
        sinks.stop()


def test_the_demo_prints_each_notification_whole_even_when_both_sinks_print_at_once(capsys):
    from demo.sinks import print_block

    blocks = [f"[sink {n}] line one\n    line two of {n}" for n in range(40)]
    threads = [threading.Thread(target=print_block, args=(b,)) for b in blocks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = capsys.readouterr().out
    assert sorted(out.split("\n\n")[:-1]) == sorted(blocks)  # every block whole, one blank line after each
