"""The Gradio page of `dgss app`: a thin layer over :class:`dgss.app.service.SegmentationService`."""

from __future__ import annotations

import html
import logging
import os

# no telemetry, no version check, no hub calls: set before gradio is imported
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_SSR_MODE", "False")

import gradio as gr

from ..errors import UserError
from .service import SegmentationService, generated_scene, scene_choices, vocabulary_text

log = logging.getLogger("dgss.app")
MAX_FILE_SIZE = "64mb"

CSS = """
.dgss-banner {background: #b00020; color: #fff; padding: 10px 14px; border-radius: 6px; font-weight: 600;}
.dgss-error {background: #fdecea; color: #8a1c12; border: 1px solid #f5c2bd; padding: 8px 12px; border-radius: 6px;}
.dgss-ok {color: #2e5e2e;}
.dgss-legend {list-style: none; padding: 0; margin: 0; columns: 2;}
.dgss-legend-item {display: flex; align-items: center; gap: 8px; padding: 2px 0;}
.dgss-swatch {display: inline-block; width: 16px; height: 16px; border: 1px solid #333; border-radius: 3px;}
.dgss-legend-share {color: #666; margin-left: auto; padding-right: 12px;}
"""

RANDOM_BANNER = (
    '<div class="dgss-banner" id="dgss-random-banner">The frozen encoders hold RANDOM weights '
    "(--random-weights): the pictures show the pipeline working, not what the method can do.</div>"
)


def _message(text: str, error: bool = False) -> str:
    cls = "dgss-error" if error else "dgss-ok"
    return f'<div class="{cls}" role="{"alert" if error else "status"}">{html.escape(text)}</div>'


def error_page(problem: str, hint: str) -> gr.Blocks:
    """The page when no model could be loaded: what went wrong and how to get a model (never empty)."""
    with gr.Blocks(title="dgss", analytics_enabled=False) as page:
        gr.Markdown("# dgss: domain-generalized semantic segmentation")
        gr.HTML(_message(problem, error=True), elem_id="dgss-model-error")
        gr.Markdown(hint, elem_id="dgss-model-hint")
    return page


def build_page(svc: SegmentationService) -> gr.Blocks:
    """The app: inputs on the left, overlay + legend + share table + depth + token attention on the right."""
    last = max(svc.num_blocks - 1, 1)  # the slider needs a range even when hidden (no adapter tokens)
    n_out = 10

    def empty(msg: str, error: bool = True, keep_inputs: bool = False):
        """Cleared outputs and ``msg``; ``keep_inputs``: the images stay, so that fixing the class list and
        pressing Enter segments them again."""
        return (
            gr.update() if keep_inputs else [],
            [],
            gr.update(choices=[], value=None, visible=False),
            None,
            "",
            None,
            None,
            None,
            None,
            _message(msg, error),
        )

    def show(results, index, block):
        """Outputs for result ``index`` of ``results`` (list of Result)."""
        res = results[index]
        att = svc.attention(res, block) if svc.has_attention else None
        return (
            svc.overlay(res),
            svc.legend_html(res),
            svc.shares(res),
            svc.depth_picture(res),
            att,
            str(res.label_file),
        )

    def run(inputs, classes, block, progress):
        def cb(i, done, total):
            progress(
                (done, total), desc=f"image {i + 1}/{len(inputs)} ({inputs[i][0]}): sliding windows", unit="windows"
            )

        results = svc.segment(inputs, classes, progress=cb)
        names = [r.name for r in results]
        chooser = gr.update(choices=names, value=names[0], visible=len(names) > 1)
        h, w = results[0].rgb.shape[:2]
        note = f"segmented {len(results)} image(s); showing {names[0]} ({w}x{h})"
        return (inputs, results, chooser) + show(results, 0, block) + (_message(note),)

    def guard(fn, *args, keep_inputs: bool = False):
        """Run ``fn``; a user error or an unexpected failure becomes a message on the page, never a traceback."""
        try:
            return fn(*args)
        except UserError as e:
            return empty(str(e), keep_inputs=keep_inputs)
        except Exception as e:  # keep serving; the log has the traceback
            log.exception("request failed")
            return empty(
                f"internal error ({type(e).__name__}: {e}); the server log has the details", keep_inputs=keep_inputs
            )

    def upload(files, classes, block, progress):
        if not files:
            return empty("no file uploaded: drop one or more images", error=False)
        inputs, problems, seen = [], [], set()
        for f in files:
            try:
                name, rgb = svc.read_upload(f if isinstance(f, str) else f.name)
            except UserError as e:
                problems.append(str(e))
                continue
            base, k = name, 1
            while name in seen:  # two uploads with the same file name
                k += 1
                name = f"{base}_{k}"
            seen.add(name)
            inputs.append((name, rgb))
        if not inputs:
            raise UserError("; ".join(problems))
        out = run(inputs, classes, block, progress)
        if problems:
            out = out[:-1] + (_message("skipped: " + "; ".join(problems), error=True),)
        return out

    def pick(choice, classes, block, progress):
        if not choice:
            return empty("pick a generated scene or upload images", error=False)
        return run([generated_scene(choice)], classes, block, progress)

    def rerun(inputs, classes, block, progress):
        if not inputs:
            raise UserError("nothing to segment yet: upload an image or pick a generated scene")
        return run(inputs, classes, block, progress)

    def on_upload(files, classes, block, progress=gr.Progress()):
        # the upload box is emptied once its files are read: the next upload starts afresh
        return tuple(guard(upload, files, classes, block, progress)) + (None,)

    def on_scene(choice, classes, block, progress=gr.Progress()):
        return guard(pick, choice, classes, block, progress)

    def on_rerun(inputs, classes, block, progress=gr.Progress()):
        return guard(rerun, inputs, classes, block, progress, keep_inputs=True)

    def on_choose(results, name, block):
        try:
            idx = [r.name for r in results].index(name)
            return show(results, idx, block)
        except Exception:  # a stale choice, or a failure: keep what is shown
            log.exception("showing %s failed", name)
            return (gr.update(),) * 6

    def on_block(results, name, block):
        if not results or not svc.has_attention:
            return gr.update()
        try:
            idx = next((i for i, r in enumerate(results) if r.name == name), 0)
            return svc.attention(results[idx], block)
        except Exception:
            log.exception("token attention at block %s failed", block)
            return gr.update()

    # Gradio's copies of uploads and outputs older than a day are deleted every hour
    with gr.Blocks(title="dgss", analytics_enabled=False, delete_cache=(3600, 86400)) as page:
        if svc.random_frozen:
            gr.HTML(RANDOM_BANNER)
        gr.Markdown("# dgss: domain-generalized semantic segmentation")
        gr.Markdown(svc.describe() + (f" ({svc.depth_note})" if svc.depth_note else ""), elem_id="dgss-model")
        inputs_state = gr.State([])
        results_state = gr.State([])
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(label="Upload images", file_count="multiple", elem_id="dgss-upload")
                scene = gr.Dropdown(
                    choices=scene_choices(), value=None, label="...or pick a generated scene", elem_id="dgss-scene"
                )
                classes = gr.Textbox(
                    label="Class names (comma-separated; ';' between entries that carry ', ' synonyms)",
                    value=vocabulary_text(svc.train_vocabulary) if svc.open_vocabulary else "",
                    visible=svc.open_vocabulary,
                    lines=1,
                    max_lines=4,
                    elem_id="dgss-classes",
                    info="Press Enter or 'Segment' to apply: the model stays loaded; text tables come from the cache.",
                )
                block = gr.Slider(
                    0,
                    last,
                    value=last,
                    step=1,
                    label="Token-attention block",
                    visible=svc.has_attention,
                    elem_id="dgss-block",
                )
                button = gr.Button("Segment", variant="primary", elem_id="dgss-run")
                message = gr.HTML(
                    _message("upload images or pick a generated scene", error=False), elem_id="dgss-message"
                )
            with gr.Column(scale=3):
                chooser = gr.Dropdown(choices=[], label="Showing", visible=False, elem_id="dgss-chooser")
                overlay = gr.Image(
                    label="Prediction overlay", type="numpy", format="png", interactive=False, elem_id="dgss-overlay"
                )
                legend = gr.HTML("", elem_id="dgss-legend")
                shares = gr.Dataframe(
                    headers=["class", "share of the image (%)"],
                    datatype=["str", "number"],
                    label="Share of the image per class",
                    interactive=False,
                    elem_id="dgss-shares",
                )
                with gr.Row():
                    depth_label = "Depth (Depth Anything V2; bright = near)" + (
                        ": RANDOM weights, not meaningful" if svc.random_frozen else ""
                    )
                    depth = gr.Image(
                        label=depth_label,
                        type="numpy",
                        format="png",
                        interactive=False,
                        visible=svc.dav2 is not None,
                        elem_id="dgss-depth",
                    )
                    attention = gr.Image(
                        label="Token attention (hue: token each patch attends to most; brightness: its weight)",
                        type="numpy",
                        format="png",
                        interactive=False,
                        visible=svc.has_attention,
                        elem_id="dgss-attention",
                    )
                label_file = gr.File(label="Label PNG (class ids)", interactive=False, elem_id="dgss-label")

        outputs = [inputs_state, results_state, chooser, overlay, legend, shares, depth, attention, label_file, message]
        assert len(outputs) == n_out
        shown = [overlay, legend, shares, depth, attention, label_file]
        files.upload(on_upload, [files, classes, block], outputs + [files])
        scene.input(on_scene, [scene, classes, block], outputs)
        button.click(on_rerun, [inputs_state, classes, block], outputs)
        classes.submit(on_rerun, [inputs_state, classes, block], outputs)
        chooser.input(on_choose, [results_state, chooser, block], shown)
        block.release(on_block, [results_state, chooser, block], attention)
    return page


def serve(page: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True):
    """One request at a time (CPU inference), queued; local only unless ``host`` says otherwise."""
    page.queue(default_concurrency_limit=1, max_size=32)
    return page.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=False,
        max_file_size=MAX_FILE_SIZE,
        prevent_thread_lock=not block,
        quiet=False,
        footer_links=[],
        mcp_server=False,
        ssr_mode=False,
        css=CSS,
        theme=gr.themes.Default(),
    )
