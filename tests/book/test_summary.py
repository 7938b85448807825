"""The intro's results-first summary: read from the reference's claims tables, every claim once."""

import pandas as pd

from ddd_support.book.reference import REFERENCE_ROOT
from ddd_support.book.schema_table import schema_entries
from ddd_support.book.summary import claims_table, outcome_sentence, outcomes, results_first

TABLE = pd.DataFrame({
    "model": ["mlp7"] * 5 + ["mlp3"],
    "claim": ["a", "b", "c", "d", "e", "a"],
    "statement": ["A", "B", "C", "D", "E", "A3"],
    "verdict": ["not testable", "holds", "inconclusive", "ruled out", "a new word", "holds"],
})


def test_outcomes_list_each_claim_once_in_the_books_order_of_verdicts():
    found = outcomes(TABLE, "mlp7")
    assert list(found) == ["holds", "ruled out", "inconclusive", "not testable", "a new word"]
    assert sorted(s for group in found.values() for s in group) == ["A", "B", "C", "D", "E"]


def test_a_threshold_claim_judged_on_one_value_says_it_has_no_interval():
    table = pd.DataFrame({"model": ["mlp7"] * 3, "claim": ["large_100x", "large_shallow", "test_dip"],
                          "statement": ["big", "shallow", "dip"], "low": [float("nan"), 0.6, float("nan")],
                          "verdict": ["ruled out", "ruled out", "holds"]})
    assert outcomes(table, "mlp7") == {"ruled out": ["big — one run's value, no interval", "shallow"],
                                       "holds": ["dip"]}


def test_the_outcome_sentence_is_a_markdown_list_with_one_item_per_verdict():
    text = outcome_sentence(TABLE, "mlp3")
    assert text == "- **holds**: A3."


def test_the_summary_of_the_committed_reference_names_every_claim_of_the_largest_model():
    summary = results_first()
    cpu = claims_table("cpu")
    statements = cpu.loc[cpu["model"] == "mlp7", "statement"]
    assert summary["model"] == "MLP7" and summary["cpu_seeds"] == "3" and summary["paper_seeds"] == "1"
    for statement in statements:
        assert summary["cpu_outcomes"].count(statement) == 1, statement
    assert summary["cpu_outcomes"].count("\n- ") == cpu.loc[cpu["model"] == "mlp7", "verdict"].nunique() - 1
    assert "95% interval" in summary["cpu_post_fit"] and summary["cpu_post_fit"].endswith("points")


def test_the_summary_follows_the_tables_when_they_change(tmp_path):
    for profile in ("cpu", "paper"):
        (tmp_path / profile / "tables").mkdir(parents=True)
        for name in ("claims.csv", "claims_over_seeds.csv", "large_activation.csv"):
            table = pd.read_csv(REFERENCE_ROOT / profile / "tables" / name)
            if "verdict" in table:
                table["verdict"] = "inconclusive"
            table.to_csv(tmp_path / profile / "tables" / name, index=False)
    summary = results_first(tmp_path)
    assert summary["cpu_outcomes"].startswith("- **inconclusive**: ") and "\n" not in summary["cpu_outcomes"]


def test_the_run_directory_table_lists_the_schema_entries_with_a_description():
    table = schema_entries()
    assert {"config.json", "metrics.csv", "labels.npz", "probe.npz"} <= set(table["file"])
    assert table["holds"].str.len().between(1, 170).all(), table


def test_the_run_directory_table_reads_entries_and_their_first_sentence():
    doc = "Intro.\n\n``a.json``\n    What a holds. More.\n``b/c_EEEEE.npz`` (two)\n    Arrays;\n    more\n"
    table = schema_entries(doc)
    assert table.to_dict("records") == [{"file": "a.json", "holds": "What a holds"},
                                        {"file": "b/c_EEEEE.npz (two)", "holds": "Arrays; more"}]
