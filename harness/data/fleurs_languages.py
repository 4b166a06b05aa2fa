"""Language metadata of FLEURS's 102 languages, by FLEURS code (``es_419``, ``cmn_hans_cn``).

The same fields as the study's table (:mod:`harness.languages`): family, subgroup, script,
whether the script has case and whether it separates words by spaces. Scripts written without
spaces between words (Chinese, Cantonese, Japanese, Thai, Lao, Khmer, Burmese) are marked
``spaced=False``: the normaliser then drops spaces and WER means little there.
"""

from __future__ import annotations

from harness.languages import Language

IE = "Indo-European"
NC = "Niger-Congo"
AA = "Afro-Asiatic"
AN = "Austronesian"


def _lang(code: str, name: str, family: str, subgroup: str, script: str, *, cased: bool | None = None,
          spaced: bool = True) -> Language:
    # Latin, Cyrillic, Greek and Armenian have case; the other scripts here do not
    if cased is None:
        cased = script in ("Latin", "Cyrillic", "Greek", "Armenian")
    return Language(code, name, family, subgroup, script, cased=cased, spaced=spaced)


_TABLE = [
    _lang("af_za", "Afrikaans", IE, "Germanic", "Latin"),
    _lang("am_et", "Amharic", AA, "Semitic", "Ethiopic"),
    _lang("ar_eg", "Arabic (Egypt)", AA, "Semitic", "Arabic"),
    _lang("as_in", "Assamese", IE, "Indo-Iranian", "Bengali-Assamese"),
    _lang("ast_es", "Asturian", IE, "Romance", "Latin"),
    _lang("az_az", "Azerbaijani", "Turkic", "Oghuz", "Latin"),
    _lang("be_by", "Belarusian", IE, "Slavic", "Cyrillic"),
    _lang("bg_bg", "Bulgarian", IE, "Slavic", "Cyrillic"),
    _lang("bn_in", "Bengali", IE, "Indo-Iranian", "Bengali-Assamese"),
    _lang("bs_ba", "Bosnian", IE, "Slavic", "Latin"),
    _lang("ca_es", "Catalan", IE, "Romance", "Latin"),
    _lang("ceb_ph", "Cebuano", AN, "Philippine", "Latin"),
    _lang("ckb_iq", "Central Kurdish (Sorani)", IE, "Indo-Iranian", "Arabic"),
    _lang("cmn_hans_cn", "Chinese (Mandarin, Simplified)", "Sino-Tibetan", "Sinitic", "Han", spaced=False),
    _lang("cs_cz", "Czech", IE, "Slavic", "Latin"),
    _lang("cy_gb", "Welsh", IE, "Celtic", "Latin"),
    _lang("da_dk", "Danish", IE, "Germanic", "Latin"),
    _lang("de_de", "German", IE, "Germanic", "Latin"),
    _lang("el_gr", "Greek", IE, "Hellenic", "Greek"),
    _lang("en_us", "English (US)", IE, "Germanic", "Latin"),
    _lang("es_419", "Spanish (Latin America)", IE, "Romance", "Latin"),
    _lang("et_ee", "Estonian", "Uralic", "Finnic", "Latin"),
    _lang("fa_ir", "Persian", IE, "Indo-Iranian", "Arabic"),
    _lang("ff_sn", "Fula", NC, "Atlantic", "Latin"),
    _lang("fi_fi", "Finnish", "Uralic", "Finnic", "Latin"),
    _lang("fil_ph", "Filipino", AN, "Philippine", "Latin"),
    _lang("fr_fr", "French", IE, "Romance", "Latin"),
    _lang("ga_ie", "Irish", IE, "Celtic", "Latin"),
    _lang("gl_es", "Galician", IE, "Romance", "Latin"),
    _lang("gu_in", "Gujarati", IE, "Indo-Iranian", "Gujarati"),
    _lang("ha_ng", "Hausa", AA, "Chadic", "Latin"),
    _lang("he_il", "Hebrew", AA, "Semitic", "Hebrew"),
    _lang("hi_in", "Hindi", IE, "Indo-Iranian", "Devanagari"),
    _lang("hr_hr", "Croatian", IE, "Slavic", "Latin"),
    _lang("hu_hu", "Hungarian", "Uralic", "Ugric", "Latin"),
    _lang("hy_am", "Armenian", IE, "Armenian", "Armenian"),
    _lang("id_id", "Indonesian", AN, "Malayic", "Latin"),
    _lang("ig_ng", "Igbo", NC, "Volta-Niger", "Latin"),
    _lang("is_is", "Icelandic", IE, "Germanic", "Latin"),
    _lang("it_it", "Italian", IE, "Romance", "Latin"),
    _lang("ja_jp", "Japanese", "Japonic", "Japanese", "Kanji/Kana", spaced=False),
    _lang("jv_id", "Javanese", AN, "Javanese", "Latin"),
    _lang("ka_ge", "Georgian", "Kartvelian", "Karto-Zan", "Georgian"),
    _lang("kam_ke", "Kamba", NC, "Bantu", "Latin"),
    _lang("kea_cv", "Kabuverdianu", "Creole", "Portuguese-based", "Latin"),
    _lang("kk_kz", "Kazakh", "Turkic", "Kipchak", "Cyrillic"),
    _lang("km_kh", "Khmer", "Austroasiatic", "Khmer", "Khmer", spaced=False),
    _lang("kn_in", "Kannada", "Dravidian", "South Dravidian", "Kannada"),
    _lang("ko_kr", "Korean", "Koreanic", "Korean", "Hangul"),
    _lang("ky_kg", "Kyrgyz", "Turkic", "Kipchak", "Cyrillic"),
    _lang("lb_lu", "Luxembourgish", IE, "Germanic", "Latin"),
    _lang("lg_ug", "Ganda", NC, "Bantu", "Latin"),
    _lang("ln_cd", "Lingala", NC, "Bantu", "Latin"),
    _lang("lo_la", "Lao", "Kra-Dai", "Tai", "Lao", spaced=False),
    _lang("lt_lt", "Lithuanian", IE, "Baltic", "Latin"),
    _lang("luo_ke", "Luo", "Nilo-Saharan", "Nilotic", "Latin"),
    _lang("lv_lv", "Latvian", IE, "Baltic", "Latin"),
    _lang("mi_nz", "Maori", AN, "Polynesian", "Latin"),
    _lang("mk_mk", "Macedonian", IE, "Slavic", "Cyrillic"),
    _lang("ml_in", "Malayalam", "Dravidian", "South Dravidian", "Malayalam"),
    _lang("mn_mn", "Mongolian", "Mongolic", "Mongolian", "Cyrillic"),
    _lang("mr_in", "Marathi", IE, "Indo-Iranian", "Devanagari"),
    _lang("ms_my", "Malay", AN, "Malayic", "Latin"),
    _lang("mt_mt", "Maltese", AA, "Semitic", "Latin"),
    _lang("my_mm", "Burmese", "Sino-Tibetan", "Lolo-Burmese", "Myanmar", spaced=False),
    _lang("nb_no", "Norwegian Bokmål", IE, "Germanic", "Latin"),
    _lang("ne_np", "Nepali", IE, "Indo-Iranian", "Devanagari"),
    _lang("nl_nl", "Dutch", IE, "Germanic", "Latin"),
    _lang("nso_za", "Northern Sotho", NC, "Bantu", "Latin"),
    _lang("ny_mw", "Nyanja", NC, "Bantu", "Latin"),
    _lang("oc_fr", "Occitan", IE, "Romance", "Latin"),
    _lang("om_et", "Oromo", AA, "Cushitic", "Latin"),
    _lang("or_in", "Odia", IE, "Indo-Iranian", "Odia"),
    _lang("pa_in", "Punjabi", IE, "Indo-Iranian", "Gurmukhi"),
    _lang("pl_pl", "Polish", IE, "Slavic", "Latin"),
    _lang("ps_af", "Pashto", IE, "Indo-Iranian", "Arabic"),
    _lang("pt_br", "Portuguese (Brazil)", IE, "Romance", "Latin"),
    _lang("ro_ro", "Romanian", IE, "Romance", "Latin"),
    _lang("ru_ru", "Russian", IE, "Slavic", "Cyrillic"),
    _lang("sd_in", "Sindhi", IE, "Indo-Iranian", "Arabic"),
    _lang("sk_sk", "Slovak", IE, "Slavic", "Latin"),
    _lang("sl_si", "Slovenian", IE, "Slavic", "Latin"),
    _lang("sn_zw", "Shona", NC, "Bantu", "Latin"),
    _lang("so_so", "Somali", AA, "Cushitic", "Latin"),
    _lang("sr_rs", "Serbian", IE, "Slavic", "Cyrillic"),
    _lang("sv_se", "Swedish", IE, "Germanic", "Latin"),
    _lang("sw_ke", "Swahili", NC, "Bantu", "Latin"),
    _lang("ta_in", "Tamil", "Dravidian", "South Dravidian", "Tamil"),
    _lang("te_in", "Telugu", "Dravidian", "South-Central Dravidian", "Telugu"),
    _lang("tg_tj", "Tajik", IE, "Indo-Iranian", "Cyrillic"),
    _lang("th_th", "Thai", "Kra-Dai", "Tai", "Thai", spaced=False),
    _lang("tr_tr", "Turkish", "Turkic", "Oghuz", "Latin"),
    _lang("uk_ua", "Ukrainian", IE, "Slavic", "Cyrillic"),
    _lang("umb_ao", "Umbundu", NC, "Bantu", "Latin"),
    _lang("ur_pk", "Urdu", IE, "Indo-Iranian", "Arabic"),
    _lang("uz_uz", "Uzbek", "Turkic", "Karluk", "Latin"),
    _lang("vi_vn", "Vietnamese", "Austroasiatic", "Vietic", "Latin"),
    _lang("wo_sn", "Wolof", NC, "Atlantic", "Latin"),
    _lang("xh_za", "Xhosa", NC, "Bantu", "Latin"),
    _lang("yo_ng", "Yoruba", NC, "Volta-Niger", "Latin"),
    _lang("yue_hant_hk", "Cantonese (Traditional)", "Sino-Tibetan", "Sinitic", "Han", spaced=False),
    _lang("zu_za", "Zulu", NC, "Bantu", "Latin"),
]

FLEURS_LANGUAGES: dict[str, Language] = {lang.code: lang for lang in _TABLE}

#: FLEURS codes of the study's 18 languages -> their Common Voice codes
COMMON_VOICE_CODES: dict[str, str] = {
    "en_us": "en", "de_de": "de", "nl_nl": "nl", "sv_se": "sv-SE", "fr_fr": "fr", "es_419": "es",
    "it_it": "it", "pt_br": "pt", "ru_ru": "ru", "uk_ua": "uk", "pl_pl": "pl", "fa_ir": "fa", "et_ee": "et",
    "ar_eg": "ar", "id_id": "id", "ja_jp": "ja", "th_th": "th", "cmn_hans_cn": "zh-CN",
}
