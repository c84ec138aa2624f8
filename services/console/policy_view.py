"""The policy snapshot of a checkpoint as the page shows it: the quorum and its votes, who may decide
(delegations included), the self-approval guard, and the timers — reminders, the deadline warning and
the escalation ladder, each step with what it does and whether it has fired. Read from the snapshot
taken when the checkpoint opened (a later change of settings does not change it), its votes and its
timer rows."""
from __future__ import annotations

from typing import Any

from shared.store.rows import TimerRow, VoteRow

MODE_TEXT = {"any": "any one of them decides", "all": "all of them must approve",
             "majority": "a majority must approve", "m_of_n": "{m} of them must approve"}
VOTE_WORD = {"approve": "approved", "revise": "asked for a revision", "abort": "aborted"}


def step_does(step: dict[str, Any], on_timeout: str) -> str:
    """What an escalation step does, in words."""
    parts = []
    if step.get("add_assignees"):
        parts.append(f"adds {', '.join(step['add_assignees'])} to the assignees")
    apply = step.get("apply")
    if apply == "default":
        parts.append(f"decides by its default (on_timeout: {on_timeout}), as policy")
    elif apply == "approve":
        parts.append("approves it, as policy")
    elif apply == "abort":
        parts.append("aborts it, as policy")
    return " and ".join(parts)


def quorum(cp: dict[str, Any], votes: list[VoteRow]) -> dict[str, Any] | None:
    """The quorum's state, voter by voter; None for a checkpoint that one decision resolves."""
    policy = cp.get("policy") or {}
    need = int(policy.get("required") or 1)
    if need <= 1:
        return None
    approval = policy.get("approval") or {}
    electorate = list(policy.get("electorate") or [])
    by_voter = {v["voter"]: v for v in votes}
    voters = []
    for name in electorate + [v for v in by_voter if v not in electorate]:
        vote = by_voter.get(name)
        voters.append({"name": name, "action": vote["action"] if vote else None,
                       "word": VOTE_WORD.get(vote["action"], vote["action"]) if vote else "has not voted",
                       "at": vote["at"] if vote else None, "channel": vote["channel"] if vote else None,
                       "feedback": vote["feedback"] if vote else None, "listed": name in electorate})
    approved = [v["voter"] for v in votes if v["action"] == "approve"]
    rejected = [v for v in votes if v["action"] != "approve"]
    tally = cp.get("tally") or {}
    progress = tally.get("progress") or (f"{len(approved)} of {need} approved" + (
        f": {', '.join(approved)}" if approved else ""))
    mode = MODE_TEXT.get(approval.get("mode") or "any", "").format(m=approval.get("m"))
    return {"required": need, "electorate": electorate, "count": len(approved), "progress": progress,
            "mode": approval.get("mode"), "mode_text": mode, "reject_wins": approval.get("reject_wins", True),
            "voters": voters, "approved": approved, "rejected": rejected,
            "percent": min(100, round(100 * len(approved) / need))}


def timers_view(cp: dict[str, Any], timers: list[TimerRow]) -> dict[str, Any]:
    policy = cp.get("policy") or {}
    rows = {(t["kind"], t["step"]): t for t in timers}
    reminders = [t for t in timers if t["kind"] == "reminder"]
    every = policy.get("remind_every_s")
    reminder = None
    if every:
        upcoming = [t["due_at"] for t in reminders if t["fired_at"] is None]
        reminder = {"every_s": every, "sent": sum(1 for t in reminders if t["outcome"] == "fired"),
                    "next_at": min(upcoming) if upcoming and cp.get("status") == "open" else None}
    warning = None
    if policy.get("warn_before_s"):
        row = rows.get(("deadline_near", 1))
        warning = {"before_s": policy["warn_before_s"], "at": cp["deadline"] - policy["warn_before_s"],
                   "fired_at": row["fired_at"] if row and row["outcome"] == "fired" else None,
                   "scheduled": row is not None}
    ladder = []
    for i, step in enumerate(policy.get("escalate") or [], start=1):
        row = rows.get(("escalate", i))
        ladder.append({"step": i, "after_s": step.get("after_s"), "at": cp["created_at"] + float(step["after_s"]),
                       "does": step_does(step, cp.get("on_timeout") or "abort"),
                       "fired_at": row["fired_at"] if row and row["outcome"] == "fired" else None,
                       "skipped": bool(row and row["outcome"] == "skipped")})
    return {"reminder": reminder, "warning": warning, "ladder": ladder}


def policy_view(cp: dict[str, Any], votes: list[VoteRow], timers: list[TimerRow]) -> dict[str, Any]:
    """Everything the policy card and the quorum card show."""
    policy = cp.get("policy") or {}
    delegated = policy.get("delegated") or {}
    electorate = list(policy.get("electorate") or [])
    assignees = cp.get("assignees") or []
    expanded = not assignees or any(a.startswith("group:") for a in assignees)  # the names say more than the list
    view = {"snapshot": bool(policy), "quorum": quorum(cp, votes), "electorate": electorate,
            "show_electorate": bool(electorate) and expanded,
            "delegated": sorted(delegated.items()), "no_self_approval": bool(policy.get("no_self_approval")),
            **timers_view(cp, timers)}
    # nothing beyond one decision by whoever may: said in one line rather than a list of "none"
    view["plain"] = not any(view[k] for k in ("quorum", "delegated", "no_self_approval", "reminder", "warning",
                                               "ladder"))
    return view


def quorum_line(cp: dict[str, Any]) -> dict[str, Any] | None:
    """The quorum's progress from the checkpoint row alone (its tally, updated with each vote): for lists."""
    need = int((cp.get("policy") or {}).get("required") or 1)
    if need <= 1:
        return None
    tally = cp.get("tally") or {}
    approved = list(tally.get("approved") or [])
    progress = tally.get("progress") or f"0 of {need} approved"
    return {"required": need, "count": len(approved), "progress": progress}
