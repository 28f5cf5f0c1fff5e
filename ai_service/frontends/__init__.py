"""Front-ends of the optional extras, beside the built-in pages: `streamlit_app` (the `streamlit` extra: the history
for analysts, `ai-service dashboard --streamlit`) and `gradio_app` (the `gradio` extra: a demo tab per model,
`ai-service gradio`). `history_frame` is their pandas side, free of either tool.

They call the service layer in-process, as the CLI does: never Flask/werkzeug, http, api, web or the engine. Only the
CLI imports them, after ai_service.extras has checked their extra is installed; the base install never does.
"""
