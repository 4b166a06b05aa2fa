"""Language metadata: the 18 study languages (DESIGN.md section 4) and their scripts.

Text normalisation and reports read this table; datasets declare which codes they cover.
Codes are Common Voice codes. :func:`language` also knows FLEURS's 102 codes (``es_419``,
``cmn_hans_cn``; table in :mod:`harness.data.fleurs_languages`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    family: str
    subgroup: str
    script: str
    #: whether the script distinguishes upper and lower case (case folding applies)
    cased: bool = True
    #: whether words are separated by spaces (False: ja, zh-CN, th; WER is of little use)
    spaced: bool = True

    @property
    def indo_european(self) -> bool:
        return self.family == "Indo-European"


_TABLE = [
    Language("en", "English", "Indo-European", "Germanic", "Latin"),
    Language("de", "German", "Indo-European", "Germanic", "Latin"),
    Language("nl", "Dutch", "Indo-European", "Germanic", "Latin"),
    Language("sv-SE", "Swedish", "Indo-European", "Germanic", "Latin"),
    Language("fr", "French", "Indo-European", "Romance", "Latin"),
    Language("es", "Spanish", "Indo-European", "Romance", "Latin"),
    Language("it", "Italian", "Indo-European", "Romance", "Latin"),
    Language("pt", "Portuguese", "Indo-European", "Romance", "Latin"),
    Language("ru", "Russian", "Indo-European", "Slavic", "Cyrillic"),
    Language("uk", "Ukrainian", "Indo-European", "Slavic", "Cyrillic"),
    Language("pl", "Polish", "Indo-European", "Slavic", "Latin"),
    Language("fa", "Persian", "Indo-European", "Indo-Iranian", "Arabic", cased=False),
    Language("et", "Estonian", "Uralic", "Finnic", "Latin"),
    Language("ar", "Arabic", "Afro-Asiatic", "Semitic", "Arabic", cased=False),
    Language("id", "Indonesian", "Austronesian", "Malayic", "Latin"),
    Language("ja", "Japanese", "Japonic", "Japanese", "Kanji/Kana", cased=False, spaced=False),
    Language("th", "Thai", "Kra-Dai", "Tai", "Thai", cased=False, spaced=False),
    Language("zh-CN", "Chinese (Mandarin)", "Sino-Tibetan", "Sinitic", "Han", cased=False, spaced=False),
]

STUDY_LANGUAGES: dict[str, Language] = {lang.code: lang for lang in _TABLE}


def language(code: str) -> Language:
    """Metadata for ``code`` (a Common Voice or a FLEURS code); unknown codes get a neutral entry
    (cased, spaced script)."""
    found = STUDY_LANGUAGES.get(code)
    if found is not None:
        return found
    from harness.data.fleurs_languages import FLEURS_LANGUAGES  # imports this module: not at the top

    found = FLEURS_LANGUAGES.get(code)
    if found is not None:
        return found
    return Language(code, code, "unknown", "unknown", "unknown")
