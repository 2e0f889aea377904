"""Deterministic chat answers for the fake OpenAI endpoint (OpenViking 0.5.2 prompts).

Memory extraction (system prompt "You are a memory extraction and maintenance agent")
expects a *restricted Python memory SDK program*. We answer with one
sdk.create_events(...) per user-role line of the conversation, verbatim, so each
extracted memory holds the user's words and is findable by the hashed
bag-of-words embedding. Anything else gets a short plain-text answer.
"""

import hashlib
import re

_CONV_LINE = re.compile(r"^\[(\d+)\]\[user\]\[[^\]]*\]:\s?(.*)$")


def _q(s: str) -> str:
    # safe inside a triple-quoted python string
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _user_lines(messages):
    idx, out = [], []
    for m in messages:
        if m.get("role") != "user":
            continue
        c = m.get("content")
        c = c if isinstance(c, str) else " ".join(p.get("text", "") for p in (c or []) if isinstance(p, dict))
        if "## Conversation History" not in c:
            continue
        for line in c.splitlines():
            mm = _CONV_LINE.match(line.strip())
            if mm and mm.group(2).strip():
                idx.append(int(mm.group(1)))
                out.append(mm.group(2).strip())
    return idx, out


def _user_name(prompt: str) -> str:
    return "user"


def answer(prompt: str, messages) -> str:
    if "memory extraction and maintenance agent" in prompt and "sdk.create_events" in prompt:
        # events are operation_mode=add_only -> applied at once (no 10 s batching window)
        idx, lines = _user_lines(messages)
        calls = []
        for i, line in zip(idx, lines, strict=True):  # one event per user line: each is recalled on its own
            name = "noted_" + hashlib.sha1(f"{i} {line}".encode()).hexdigest()[:8]
            name = name.translate(str.maketrans("0123456789", "abcdefghij"))  # event_name: no digits
            calls.append(
                f'sdk.create_events(event_name="""{name}""", goal="""remember user statements""", '
                f'summary="""{_q(line)}""", ranges="""{i}""")'
            )
        return "\n".join([*calls, "sdk.commit()"])
    if "restricted Python memory SDK" in prompt:
        return "sdk.commit()"
    # file summaries: echo the file content so abstracts stay searchable
    m = re.search(r"【File Content】\n(.*?)\n\nOutput requirements", prompt, re.S)
    if m:
        return m.group(1).strip()[:1000]
    # directory overviews and anything else: short deterministic text
    words = re.findall(r"\w+", prompt)[:40]
    return "# Overview\n" + " ".join(words)
