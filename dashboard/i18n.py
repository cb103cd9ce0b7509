"""The dashboard's words in French (the default) and English.

French pages live at `/`, English ones under `/en/`; `path(lang, name, **ids)`
gives the URL of a page in a language so links keep the reader's language.
"""

from __future__ import annotations

LANGS = ("fr", "en")

#: page name -> (French path, English path), with {placeholders}.
PATHS: dict[str, tuple[str, str]] = {
    "home": ("/", "/en/"),
    "town": ("/ville/{insee}", "/en/town/{insee}"),
    "sensor": ("/capteur/{sensor}", "/en/sensor/{sensor}"),
    "about": ("/indicateurs", "/en/indicators"),
    "data": ("/donnees", "/en/data"),
    "report": ("/rapport/{place}/{month}", "/en/report/{place}/{month}"),
}


def path(lang: str, name: str, **ids: str) -> str:
    """The URL of page `name` in `lang`."""
    return PATHS[name][0 if lang == "fr" else 1].format(**ids)


WORDS: dict[str, tuple[str, str]] = {
    "site": ("Qualité de vie de la Métropole", "Metropolis quality of life"),
    "tagline": ("Air, bruit et chaleur dans les communes pilotes d'Aix-Marseille-Provence",
                "Air, noise and heat in the pilot towns of Aix-Marseille-Provence"),
    "skip": ("Aller au contenu", "Skip to content"),
    "nav": ("Navigation principale", "Main navigation"),
    "map": ("Carte", "Map"),
    "about": ("Les indicateurs", "The indicators"),
    "data": ("Données ouvertes", "Open data"),
    "other_lang": ("English", "Français"),
    "other_lang_code": ("en", "fr"),
    "map_title": ("Indice ATMO du jour par commune et par capteur", "Today's ATMO index by town and sensor"),
    "map_desc": (("Carte schématique des communes pilotes ; chaque commune et chaque station d'air est colorée selon "
                 "son indice ATMO le plus récent. Le tableau ci-dessous donne les mêmes informations."),
                 ("Schematic map of the pilot towns; each town and air station is coloured by its latest ATMO index. "
                 "The table below gives the same information.")),
    "towns": ("Communes", "Towns"),
    "town": ("Commune", "Town"),
    "sensors": ("Capteurs", "Sensors"),
    "sensor": ("Capteur", "Sensor"),
    "index": ("Indice", "Index"),
    "atmo": ("Indice ATMO", "ATMO index"),
    "eaqi": ("Indice européen (EAQI)", "European index (EAQI)"),
    "day": ("Jour", "Day"),
    "hour": ("Heure", "Hour"),
    "date": ("Date", "Date"),
    "level": ("Qualificatif", "Level"),
    "provisional": ("provisoire", "provisional"),
    "no_data": ("Pas encore de données.", "No data yet."),
    "kind_air": ("air", "air"),
    "kind_noise": ("bruit", "noise"),
    "kind_weather": ("météo", "weather"),
    "latest": ("Dernières valeurs", "Latest values"),
    "history": ("Historique", "History"),
    "sub_indices": ("Sous-indices", "Sub-indices"),
    "pollutant": ("Polluant", "Pollutant"),
    "statistic": ("Statistique du jour (µg/m³)", "Daily statistic (µg/m³)"),
    "atmo_30": ("Indice ATMO des 30 derniers jours", "ATMO index over the last 30 days"),
    "eaqi_48": ("Indice européen des 48 dernières heures", "European index over the last 48 hours"),
    "heat": ("Chaleur", "Heat"),
    "heat_chart": ("Températures minimale et maximale par jour (°C)", "Daily minimum and maximum temperature (°C)"),
    "tmin": ("Tn (°C)", "Tn (°C)"),
    "tmax": ("Tx (°C)", "Tx (°C)"),
    "tropical_nights": ("Nuits tropicales", "Tropical nights"),
    "heat_wave_days": ("Jours de canicule", "Heat-wave days"),
    "noise": ("Bruit", "Noise"),
    "noise_chart": ("Lden et Lnight par jour (dB(A))", "Daily Lden and Lnight (dB(A))"),
    "who": ("Dépassements des lignes directrices OMS 2021", "WHO 2021 guideline exceedances"),
    "none": ("Aucun", "None"),
    "value": ("Valeur", "Value"),
    "limit": ("Seuil", "Limit"),
    "report": ("Rapport mensuel", "Monthly report"),
    "reports": ("Rapports mensuels", "Monthly reports"),
    "opendata_links": ("Télécharger", "Download"),
    "show_table": ("Voir les données du graphique", "Show the chart's data"),
    "measure": ("Mesure", "Measure"),
    "unit": ("Unité", "Unit"),
    "time": ("Heure (locale)", "Time (local)"),
    "raw_history": ("Mesures horaires des 7 derniers jours", "Hourly measures of the last 7 days"),
    "metropole": ("Métropole (communes pilotes)", "Metropolis (pilot towns)"),
    "source": ("Source", "Source"),
    "back_home": ("Retour à la carte", "Back to the map"),
    "not_found": ("Page introuvable", "Page not found"),
    "legend": ("Légende", "Legend"),
    "station": ("station d'air", "air station"),
    "other_sensor": ("autre capteur (bruit, météo)", "other sensor (noise, weather)"),
    "updated": ("Mis à jour", "Updated"),
}


def words(lang: str) -> dict[str, str]:
    """Every word in `lang`."""
    i = 0 if lang == "fr" else 1
    return {k: v[i] for k, v in WORDS.items()}
