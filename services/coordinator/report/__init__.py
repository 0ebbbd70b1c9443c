"""How a run's results look: the self-contained HTML report (Jinja2 template, inline SVG plots). Pure."""
