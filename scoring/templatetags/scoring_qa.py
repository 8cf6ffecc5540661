"""``{% model_qa_panel round %}``: the model-assisted QA list, for the lead dashboard.

A template tag rather than a view import so the annotation app (below scoring) never imports
scoring code: the dashboard's template asks for the panel by name."""

from django import template

from scoring.selectors import model_disagreements

register = template.Library()


@register.inclusion_tag("scoring/_qa_panel.html", takes_context=True)
def model_qa_panel(context, round_, limit: int = 3):
    return {
        "round": round_,
        "qa": model_disagreements(round_id=round_.pk, limit=limit),
        "csrf_token": context.get("csrf_token"),
        "full_page": False,
    }
