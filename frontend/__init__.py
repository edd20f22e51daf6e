"""The annotator-facing pages: templates, ES modules and CSS, served by Django with no build step."""
