"""dasl-prepare on the real datasets beside the checkout (slow; skipped without the data)."""
import pytest

from dasl_tf.prepare import PrepareConfig, prepare


@pytest.mark.slow
def test_douban_book_music(shared_data, tmp_path):
  root = shared_data / "douban_book_music"
  stats = prepare(PrepareConfig(
      format="douban", input_a=str(root / "douban_book" / "ratings.dat"),
      input_b=str(root / "douban_music" / "ratings.dat"), output_dir=str(tmp_path / "out")))
  # Numbers from the dataset's PROVENANCE.md.
  assert (stats["domains"]["A"]["records"], stats["domains"]["B"]["records"]) == (96041, 69709)
  assert (stats["domains"]["A"]["users"], stats["domains"]["B"]["users"]) == (2110, 1672)
  assert (stats["domains"]["A"]["items"], stats["domains"]["B"]["items"]) == (6777, 5567)
  # One music item occurs only in validation or test: it is not in the vocabulary.
  assert stats["domains"]["B"]["vocabulary_items"] == 5566
  assert stats["overlap_users"] == 1566
  assert any("no timestamp column" in w for w in stats["warnings"])
  assert sum(s["examples"] for s in stats["splits"].values()) == 96041 + 69709


@pytest.mark.slow
def test_ciao_dvds_books(shared_data, tmp_path):
  stats = prepare(PrepareConfig(
      format="mat", input=str(shared_data / "ciao_tang" / "rating_with_timestamp.mat"),
      category_a="1", category_b="2", output_dir=str(tmp_path / "out"), split="kfold"))
  a, b = stats["domains"]["A"], stats["domains"]["B"]
  assert (a["rows_read"], a["users"], a["items"]) == (39887, 4358, 11299)
  assert (b["rows_read"], b["users"], b["items"]) == (21968, 3298, 12605)
  assert a["dropped"]["duplicate"] == 237 and a["dropped"]["invalid_rating"] == 1
  assert b["dropped"]["duplicate"] == 30
  assert stats["overlap_users"] == 2391
  assert sorted(stats["splits"]) == [f"fold-{k}" for k in range(5)]
