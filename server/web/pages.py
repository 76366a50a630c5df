"""The web form's pages as HTML: every value a person or a technician typed goes through
html.escape, so a name or a description holding markup or script shows as the text it is.
No script, no inline style, nothing from another origin: the CSP (listener.py) forbids them."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from sonde.server.domain.web_requests import MAX_CONTACT, MAX_DESCRIPTION, MAX_MACHINE, MAX_NAME

STYLE = """\
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem;
       color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.5rem; }
label { display: block; font-weight: 600; margin-top: 1rem; }
input[type=text], input[type=email], textarea { width: 100%; padding: .5rem; font: inherit;
       box-sizing: border-box; border: 1px solid #8a8a8a; border-radius: 4px; }
textarea { min-height: 10rem; }
.hint { color: #555; font-size: .9rem; margin: .2rem 0 0; }
.problem { color: #a4000f; font-weight: 600; margin: .2rem 0 0; }
.summary { border: 2px solid #a4000f; padding: .5rem 1rem; border-radius: 4px; }
.done { border: 2px solid #1a7f37; padding: .5rem 1rem; border-radius: 4px; }
button { margin-top: 1.5rem; padding: .6rem 1.4rem; font: inherit; font-weight: 600;
       border: 0; border-radius: 4px; background: #0b5cad; color: #fff; cursor: pointer; }
fieldset { border: 0; padding: 0; margin: 1rem 0 0; }
fieldset label { display: inline-block; font-weight: normal; margin: 0 1rem 0 0; }
"""


def page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="/style.css"></head>'
        f"<body>{body}</body></html>\n"
    )


def _problem(problems: Mapping[str, str], name: str) -> str:
    if name not in problems:
        return ""
    return f'<p class="problem" id="{name}-problem">{escape(problems[name])}</p>'


def _described(problems: Mapping[str, str], name: str, hint: str) -> str:
    ids = [f"{name}-hint"] if hint else []
    if name in problems:
        ids.append(f"{name}-problem")
    invalid = ' aria-invalid="true"' if name in problems else ""
    return f' aria-describedby="{" ".join(ids)}"{invalid}' if ids else invalid


def _input(
    name: str, label: str, values: Mapping[str, str], problems: Mapping[str, str], *,
    limit: int, required: bool, hint: str = "", autocomplete: str = "",
) -> str:  # fmt: skip
    hint_html = f'<p class="hint" id="{name}-hint">{escape(hint)}</p>' if hint else ""
    needed = " required" if required else ""
    completes = f' autocomplete="{autocomplete}"' if autocomplete else ""
    return (
        f'<label for="{name}">{escape(label)}</label>{hint_html}{_problem(problems, name)}'
        f'<input type="text" id="{name}" name="{name}" maxlength="{limit}"{needed}{completes}'
        f'{_described(problems, name, hint)} value="{escape(values.get(name, ""))}">'
    )


def request_form(
    submission_id: str,
    values: Mapping[str, str] | None = None,
    problems: Mapping[str, str] | None = None,
    notice: str = "",
) -> str:
    """The form, with what was typed and what to change when it comes back refused."""
    values = values or {}
    problems = problems or {}
    summary = ""
    if problems or notice:
        items = "".join(
            f'<li><a href="#{name}">{escape(name)}</a>: {escape(why)}</li>'
            for name, why in problems.items()
        )
        said = f"<p>{escape(notice)}</p>" if notice else "<p>Please change what is marked:</p>"
        summary = f'<div class="summary" role="alert">{said}<ul>{items}</ul></div>'
    description_hint = "What happens, since when, what you already tried."
    body = (
        "<h1>Ask the helpdesk for help</h1>"
        "<p>Tell us what is wrong: a technician will get back to you. Urgent, or you cannot "
        "work at all? Call the helpdesk.</p>"
        f"{summary}"
        '<form method="post" action="/requests" accept-charset="utf-8">'
        f'<input type="hidden" name="submission" value="{escape(submission_id)}">'
        + _input("name", "Your name", values, problems, limit=MAX_NAME, required=True,
                 autocomplete="name")
        + _input("contact", "Your mail address or phone number", values, problems,
                 limit=MAX_CONTACT, required=True, autocomplete="email",
                 hint="We write to you there; a mail address also gets the ticket number.")
        + _input("machine", "Your computer's name (if you know it)", values, problems,
                 limit=MAX_MACHINE, required=False,
                 hint="On the label on the computer, or in Settings > System > About.")
        + '<label for="description">What is wrong?</label>'
        f'<p class="hint" id="description-hint">{escape(description_hint)}</p>'
        f"{_problem(problems, 'description')}"
        f'<textarea id="description" name="description" maxlength="{MAX_DESCRIPTION}" required'
        f"{_described(problems, 'description', description_hint)}>"
        f"{escape(values.get('description', ''))}</textarea>"
        '<button type="submit">Send my request</button></form>'
    )  # fmt: skip
    return page("Ask the helpdesk for help", body)


def request_taken(ticket_id: int, again: bool, mailed: bool) -> str:
    again_text = " (we had received this form already)" if again else ""
    mail_text = (
        "<p>We sent you a mail with it: reply to that mail to add to your request.</p>"
        if mailed
        else ""
    )
    body = (
        '<div class="done" role="status">'
        f"<h1>Your request is ticket #{ticket_id}{escape(again_text)}</h1>"
        f"<p>Keep this number: a technician will contact you.</p>{mail_text}</div>"
        '<p><a href="/">Ask for something else</a></p>'
    )
    return page(f"Ticket #{ticket_id}", body)


def rating_form(
    token: str, ticket_id: int, title: str, problem: str = "", comment: str = ""
) -> str:
    choices = "".join(
        f'<label><input type="radio" name="rating" value="{n}" required> {n}</label>'
        for n in range(1, 6)
    )
    problem_html = f'<p class="problem" role="alert">{escape(problem)}</p>' if problem else ""
    body = (
        f"<h1>How did we do on ticket #{ticket_id}?</h1>"
        f"<p>{escape(title)}</p>{problem_html}"
        f'<form method="post" action="/rate/{escape(token)}" accept-charset="utf-8">'
        f"<fieldset><legend>Your rating, from 1 (bad) to 5 (very good)</legend>{choices}"
        "</fieldset>"
        '<label for="comment">A comment (optional)</label>'
        f'<textarea id="comment" name="comment" maxlength="2000">{escape(comment)}</textarea>'
        '<button type="submit">Send my rating</button></form>'
    )
    return page(f"Rate ticket #{ticket_id}", body)


def message(title: str, text: str, *, good: bool = False) -> str:
    css = "done" if good else "summary"
    body = f'<div class="{css}" role="status"><h1>{escape(title)}</h1><p>{escape(text)}</p></div>'
    return page(title, body)
