"""analysis/html_stages.py: the report page's stage list and ladder fit, from the summary."""

from analysis.html_stages import ladder_section, stages_section

SUMMARY = {
    "stages": [
        {"name": "rung0", "kind": "ladder_size", "folder": "rung0", "status": "done",
         "counts": {"total": 4}, "best": {"group": "optim.lr=0.1", "mean": 5.25}},
        {"name": "target", "kind": "target_search", "folder": "target", "status": "interrupted",
         "counts": {"total": 3}, "best": None, "confirmed_winner": None},
    ],
    "ladder": {
        "axis": "params", "tokens": "equal", "confidence": 0.9,
        "rungs": [{"size": 12288, "n_trials": 4, "compared_at_step": 24, "optima": {
            "optim.lr": {"value": 0.1, "low": 0.05, "high": 0.2, "method": "quadratic"}}},
                  {"size": 40960, "n_trials": 4, "compared_at_step": 12, "optima": {
            "optim.lr": {"value": 0.08, "low": 0.02, "high": 0.3,
                         "method": "fallback: the fit is not convex inside the sampled range"}}}],
        "fits": {"optim.lr": {"exponent": -0.3, "exponent_ci": [-0.5, 0.1],
                              "prediction": 0.05, "prediction_ci": [0.01, 0.2]}},
        "target": {"size": 110592},
    },
}


def test_stage_rows_show_kind_status_and_best():
    html = stages_section(SUMMARY)
    assert 'id="stages-table"' in html
    assert "ladder_size" in html and "optim.lr=0.1" in html and "5.2500" in html
    assert "interrupted" in html


def test_ladder_rows_flag_a_fallback_size_and_show_the_prediction():
    html = ladder_section(SUMMARY)
    assert 'id="ladder-sizes"' in html and 'id="ladder-fits"' in html
    assert "0.1 [0.05, 0.2]</td>" in html and "0.08 [0.02, 0.3] (fallback)" in html
    assert "110,592" in html and "-0.3000" in html and "[0.01, 0.2]" in html


def test_no_stages_no_section():
    assert stages_section({}) is None and ladder_section({}) is None
