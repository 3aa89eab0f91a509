"""The demo app: upload an image, see the model's probabilities, a risk colour and Grad-CAM.

A teaching demo, not a medical device. Run it from the repository root:

    make app
    streamlit run src/medclass/app/streamlit_app.py -- --model _build/outputs/cpu/brain_mri

Which model it serves: ``--model`` (or ``MEDCLASS_MODEL``), else the latest export under
``--output-dir`` (or ``MEDCLASS_OUTPUT_DIR``, default ``_build/outputs``, followed by the
published models in ``book/published/cpu/models/``); the sidebar switches between the exports
it finds. Explained in chapter "Deployment: the demo app"
(book/deployment.md); the logic is in ``medclass.serving``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import medclass  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .` (Streamlit Community Cloud)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd
import streamlit as st

from medclass import serving

RISK_COLOURS = {"green": "#2e9d5b", "amber": "#e0a526", "red": "#d64545"}
RISK_WORDS = {
    "green": "low: below the amber threshold",
    "amber": "intermediate: at or above amber, below red",
    "red": "high: at or above the red threshold",
}
NOTICE = (
    "**Teaching demo, not a medical device.** The models behind this page were trained for a "
    "book on public datasets; they have not been validated for clinical use. Do not use them to "
    "diagnose, treat or triage anyone."
)
STYLE = """
<style>
.block-container {padding-top: 2rem;}
.risk {border-radius: 0.6rem; padding: 0.9rem 1.1rem; color: #fff; font-size: 1.05rem;}
.risk b {font-size: 1.35rem; letter-spacing: 0.05em;}
[data-testid="stMetricValue"] {font-variant-numeric: tabular-nums;}
</style>
"""


def settings(argv: list[str]) -> argparse.Namespace:
    """The command line after ``--`` in ``streamlit run ... -- --model PATH``."""
    parser = argparse.ArgumentParser(prog="streamlit_app.py")
    parser.add_argument("--model", help="an export folder (model.keras + model.json)")
    parser.add_argument("--output-dir", help="where to look for exports (default _build/outputs)")
    return parser.parse_known_args(argv)[0]


@st.cache_resource(show_spinner="Loading the model...")
def cached_bundle(model_dir: str, modified: tuple[int, ...]) -> serving.Bundle:
    """One loaded model per folder and version of its files (``modified``: the times the model
    and its sidecars were last written), shared by every session."""
    return serving.load_bundle(model_dir)


def choose_model(options: argparse.Namespace) -> Path | None:
    """The sidebar's model selector: the configured model first, then the other exports found."""
    configured = Path(options.model) if options.model else serving.default_model_dir(options.output_dir)
    found = serving.exports_found(options.output_dir)
    choices = list(dict.fromkeys(path.resolve() for path in ([configured] if configured else []) + found))
    if not choices:
        return None
    return st.sidebar.selectbox("Model", choices, format_func=shorter_path)


def shorter_path(path: Path) -> str:
    """A model folder as the sidebar names it: relative to the working folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def show_model(bundle: serving.Bundle) -> None:
    info, evaluation = bundle.info, bundle.evaluation
    st.sidebar.markdown(
        f"**Classes:** {', '.join(bundle.class_names)}  \n"
        f"**Backbone:** {info.get('backbone', '?')} at {bundle.image_size[0]} px  \n"
        f"**Trained on:** {info.get('data', '?')}"
    )
    if evaluation:
        test = evaluation.get("test", {})
        lines = [f"- {name}: {value:.3f}" for name, value in list(test.items())[:4]]
        st.sidebar.markdown("**Test split (evaluation chapter):**\n" + "\n".join(lines))
        st.sidebar.caption(
            f"Calibrated with temperature {bundle.temperature:.2f}; "
            f"flip averaging {'on' if bundle.tta else 'off'}."
        )
    else:
        st.sidebar.caption(
            "No evaluation.json beside this model: uncalibrated probabilities, default thresholds."
        )
    card = bundle.model_dir / "model_card.md"
    if card.is_file():
        with st.sidebar.expander("Model card"):
            st.markdown(card.read_text())


def show_risk(risk: serving.Risk) -> None:
    if risk.level is None:
        st.info("This model's model.json names no class that counts towards a risk colour.")
        return
    names = " + ".join(f"P({name})" for name in risk.classes)
    st.markdown(
        f'<div class="risk" style="background:{RISK_COLOURS[risk.level]}">'
        f"<b>{risk.level.upper()}</b> &nbsp; risk score {names} = {risk.score:.3f}</div>",
        unsafe_allow_html=True,
    )
    st.caption(
        f"Green below {risk.amber:.3f}; amber from {risk.amber:.3f}; red from {risk.red:.3f} "
        f"({risk.red_source}). {RISK_WORDS[risk.level].capitalize()}."
    )


def loaded_bundle(options: argparse.Namespace) -> serving.Bundle | None:
    """The model to serve, or None with the reason on the page."""
    model_dir = choose_model(options)
    if model_dir is None:
        st.error(
            f"No exported model found under {serving.exports_dir(options.output_dir)}. Run `make book` "
            "(or a training chapter), or start the app with `-- --model /path/to/export`."
        )
        return None
    try:
        return cached_bundle(str(model_dir), serving.files_modified(model_dir))
    except serving.ModelUnavailable as error:
        st.error(str(error))
        return None


def uploaded_image(bundle: serving.Bundle):
    """``(name, pixels)`` of the uploaded image, or None with what to do on the page."""
    upload = st.file_uploader(
        "Drop a JPEG or PNG image here",
        type=serving.UPLOAD_TYPES,
        max_upload_size=serving.MAX_UPLOAD_MB,
        help=f"At most {serving.MAX_UPLOAD_MB} MB and {serving.MAX_PIXELS // 10**6} megapixels. "
        "The image is read in memory and not stored.",
    )
    if upload is None:
        st.info(f"Upload an image of the kind the model was trained on: {', '.join(bundle.class_names)}.")
        return None
    try:
        pixels, notes = serving.read_image(upload.getvalue(), upload.name)
    except serving.UnreadableImage as error:
        st.error(str(error))
        return None
    if notes:
        st.caption(f"{upload.name}: " + "; ".join(notes) + ".")
    return upload.name, pixels


def show_prediction(bundle: serving.Bundle, name: str, pixels, probabilities: dict[str, float]) -> None:
    """The image, its saliency map, the answer with its risk colour, and every class's probability."""
    predicted = max(probabilities, key=probabilities.get)
    left, middle, right = st.columns([1, 1, 1.2])
    with left:
        st.subheader("Image")
        st.image(pixels, caption=f"{name}, {pixels.shape[1]}x{pixels.shape[0]} px")
    with middle:
        st.subheader("Saliency map")
        overlay = serving.explain(bundle, pixels, predicted)
        st.image(overlay, caption=serving.explanation_caption(bundle, predicted))
    with right:
        st.subheader("Prediction")
        st.metric(
            "Most likely class",
            predicted,
            f"P = {probabilities[predicted]:.3f}",
            delta_color="off",
            delta_arrow="off",
            border=True,
        )
        show_risk(serving.assess_risk(bundle, probabilities))
        table = pd.DataFrame(
            {
                "class": list(probabilities),
                "probability": [round(value, 4) for value in probabilities.values()],
                "what it means": [bundle.class_definitions.get(label, "") for label in probabilities],
            }
        )
        st.bar_chart(
            table, x="class", y="probability", horizontal=True, sort=False, height=60 + 30 * len(table)
        )
    st.subheader("Class probabilities")
    st.dataframe(table, hide_index=True, width="stretch")


def main() -> None:
    st.set_page_config(page_title="medclass: demo classifier", page_icon="🩻", layout="wide")
    st.markdown(STYLE, unsafe_allow_html=True)
    st.title("Medical image classification: demo")
    st.warning(NOTICE)
    bundle = loaded_bundle(settings(sys.argv[1:]))
    if bundle is None:
        return
    show_model(bundle)
    image = uploaded_image(bundle)
    if image is None:
        return
    name, pixels = image
    try:
        probabilities = serving.predict(bundle, pixels)
    except serving.ModelUnavailable as error:
        st.error(str(error))
        return
    show_prediction(bundle, name, pixels, probabilities)


main()
