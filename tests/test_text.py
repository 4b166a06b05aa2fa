from harness.engine.text import BLANK, Vocabulary, build_vocabulary, greedy_decode, normalize


def test_normalize_cased_latin_drops_punctuation_keeps_inner_apostrophe():
    assert normalize("  L'Homme, dit-il : « Bonjour ! »  ", "fr") == "l'homme dit-il bonjour"
    assert normalize("It's 'quoted' -- here.", "en") == "it's quoted here"


def test_normalize_keeps_german_sharp_s_and_umlauts():
    assert normalize("Straße ÜBER", "de") == "straße über"


def test_normalize_unicode_nfkc_and_cyrillic_case():
    assert normalize("ＡＢＣ Привет!", "ru") == "abc привет"


def test_normalize_scripts_without_spaces_drop_them():
    assert normalize("今日は 良い 天気。", "ja") == "今日は良い天気"
    assert normalize("我 爱 北京！", "zh-CN") == "我爱北京"
    assert normalize("สวัสดี ครับ", "th") == "สวัสดีครับ"


def test_normalize_keeps_combining_marks():
    # Arabic harakat are combining marks (category Mn): they belong to the word
    assert normalize("كَتَبَ، كتاب", "ar") == "كَتَبَ كتاب"


def test_vocabulary_threshold_is_a_share_of_the_training_text():
    texts = ["a" * 99_999 + "b", "c"]  # b and c: each 1 of 100,001 characters (~0.001 %)
    vocab = build_vocabulary(texts, min_fraction=1e-5)
    assert vocab.symbols == (BLANK, "a")  # 1/100001 < 1e-5
    vocab = build_vocabulary(["ab" * 10, "z"], min_fraction=0.04)  # z is 1/21 = 0.048
    assert vocab.symbols == (BLANK, "a", "b", "z")


def test_encode_counts_characters_outside_the_vocabulary():
    vocab = Vocabulary((BLANK, " ", "a", "b"))
    assert vocab.encode("ab xa") == ([2, 3, 1, 2], 1)


def test_greedy_decode_collapses_repeats_and_blanks():
    vocab = Vocabulary((BLANK, " ", "a", "b"))
    assert greedy_decode([0, 2, 2, 0, 2, 3, 3, 1, 1, 0, 3, 0], vocab) == "aab b"
    assert greedy_decode([1, 2, 1, 1], vocab) == "a"  # edge spaces tidied


def test_normalize_arabic_script_punctuation_and_persian_joiner():
    assert normalize("كيف حالك؟ نعم، شكرا؛", "ar") == "كيف حالك نعم شكرا"
    # the zero-width non-joiner inside a Persian word is part of its spelling
    assert normalize("می\u200cخواهم بروم.", "fa") == "می\u200cخواهم بروم"
    assert normalize("\u200cسلام\u200c", "fa") == "سلام"


def test_normalize_thai_keeps_vowel_and_tone_marks():
    text = normalize("ภาษาไทย ง่ายนิดเดียว!", "th")
    assert text == "ภาษาไทยง่ายนิดเดียว" and "\u0e48" in text  # mai ek (a tone mark, Mn) kept
