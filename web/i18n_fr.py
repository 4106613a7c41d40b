"""French strings of the UI, keyed by their English text."""

FR: dict[str, str] = {
    # navigation and common words
    "Main menu": "Menu principal",
    "Dashboard": "Tableau de bord",
    "Calls": "Appels",
    "Block list": "Liste noire",
    "Allow list": "Liste blanche",
    "Rules": "Règles",
    "Test a number": "Tester un numéro",
    "Voicemail": "Messagerie",
    "Import/export": "Import/export",
    "Backup": "Sauvegarde",
    "Notifications": "Notifications",
    "Channels": "Canaux",
    "Channel": "Canal",
    "Result": "Résultat",
    "sent": "envoyé",
    "When": "Quand",
    "What": "Quoi",
    "Status": "État",
    "Error": "Erreur",
    "Source": "Source",
    "Entries": "Entrées",
    "Last success": "Dernier succès",
    "Refresh": "Actualiser",
    "Subscribe": "S'abonner",
    "List": "Liste",
    "List subscriptions": "Abonnements à des listes",
    "LAN source: the list is on my own network (allows a private or local address)":
        "Source locale : la liste est sur mon propre réseau (adresse privée ou locale permise)",
    "LAN": "réseau local",
    "Latest notifications": "Dernières notifications",
    "Nothing sent yet.": "Rien n'a encore été envoyé.",
    "No channel is configured.": "Aucun canal n'est configuré.",
    "Send a test message": "Envoyer un message de test",
    "URL or file (https://… or /path/list.csv)": "URL ou fichier (https://… ou /chemin/liste.csv)",
    "Refresh every (hours)": "Actualiser toutes les (heures)",
    "Give a whole number of hours.": "Indiquez un nombre entier d'heures.",
    "The refresh failed.": "L'actualisation a échoué.",
    "There is no such subscription.": "Cet abonnement n'existe pas.",
    "Subscription removed with its entries.": "Abonnement retiré avec ses entrées.",
    "Subscribed; the list is fetched at the next refresh.":
        "Abonné ; la liste sera récupérée à la prochaine actualisation.",
    "Refreshed: {n} entries, {r} rejected lines.":
        "Actualisé : {n} entrées, {r} lignes refusées.",
    "No channel is configured: set [notify.smtp] host or notify.apprise_urls.":
        "Aucun canal n'est configuré : renseignez [notify.smtp] host ou notify.apprise_urls.",
    "The daily digest goes out at {time}. Channels are set in the configuration file.":
        "Le résumé quotidien part à {time}. Les canaux se règlent dans le fichier de "
        "configuration.",
    "Daily digest time (HH:MM, local)": "Heure du résumé quotidien (HH:MM, heure locale)",
    "Digest time saved; it applies within a minute.":
        "Heure du résumé enregistrée ; elle s'applique dans la minute.",
    "Restore": "Restaurer",
    "Backup restored": "Sauvegarde restaurée",
    "Download a backup": "Télécharger une sauvegarde",
    "Include the call log": "Inclure le journal des appels",
    "Include voicemail recordings": "Inclure les messages vocaux",
    "Backup file (.tar.gz)": "Fichier de sauvegarde (.tar.gz)",
    "I understand this replaces the lists, rules and settings":
        "Je comprends que cela remplace les listes, les règles et les réglages",
    "Choose a backup file (.tar.gz).": "Choisissez un fichier de sauvegarde (.tar.gz).",
    "Tick the box: a restore replaces the lists, rules and settings.":
        "Cochez la case : une restauration remplace les listes, les règles et les réglages.",
    "Lists, rules, settings and your own prompts, in one file you can restore here or with "
    "`ringfence restore`.":
        "Listes, règles, réglages et vos propres annonces, dans un fichier à restaurer ici ou "
        "avec `ringfence restore`.",
    "Account": "Compte",
    "Log out": "Se déconnecter",
    "Log in": "Se connecter",
    "Password": "Mot de passe",
    "Back to the dashboard": "Retour au tableau de bord",
    "Form rejected": "Formulaire refusé",
    "This form expired or did not come from this page (missing or wrong CSRF token). Go back, "
    "reload the page and try again.":
        "Ce formulaire a expiré ou ne vient pas de cette page (jeton CSRF absent ou faux). "
        "Revenez en arrière, rechargez la page et réessayez.",
    "Pages": "Pages",
    "Newer": "Plus récents",
    "Older": "Plus anciens",
    "Page {n} of {total}": "Page {n} sur {total}",
    "Save": "Enregistrer",
    "Cancel": "Annuler",
    "Delete": "Supprimer",
    "Edit": "Modifier",
    "Remove": "Retirer",
    "Add": "Ajouter",
    "Search": "Rechercher",
    "Filter": "Filtrer",
    "Clear": "Effacer",
    "Confirm": "Confirmer",
    "Enabled": "Activée",
    "yes": "oui",
    "no": "non",
    "all": "toutes",
    "new": "nouveau",
    "since": "depuis",
    "withheld": "numéro masqué",
    "invalid": "numéro invalide",
    "number": "numéro",
    # first run, login, account
    "First start": "Premier démarrage",
    "Welcome to Ringfence": "Bienvenue dans Ringfence",
    "Choose the password that protects this page. There is no default password.":
        "Choisissez le mot de passe qui protège cette page. Il n'y a pas de mot de passe par "
        "défaut.",
    "New password (at least 10 characters)": "Nouveau mot de passe (10 caractères au moins)",
    "Same password again": "Le même mot de passe encore",
    "Set the password": "Définir le mot de passe",
    "You can also set it on the Raspberry Pi with: ringfence set-password":
        "Vous pouvez aussi le définir sur le Raspberry Pi avec : ringfence set-password",
    "the password must have at least 10 characters":
        "le mot de passe doit avoir au moins 10 caractères",
    "the two passwords differ": "les deux mots de passe sont différents",
    "Password set. Welcome to Ringfence.": "Mot de passe défini. Bienvenue dans Ringfence.",
    "Wrong password.": "Mot de passe incorrect.",
    "Too many failed logins. Try again in {seconds} seconds.":
        "Trop d'échecs de connexion. Réessayez dans {seconds} secondes.",
    "Change the password": "Changer le mot de passe",
    "Current password": "Mot de passe actuel",
    "The current password is wrong.": "Le mot de passe actuel est incorrect.",
    "Password changed. Other sessions are logged out.":
        "Mot de passe changé. Les autres sessions sont déconnectées.",
    "API token": "Jeton d'API",
    "Scripts use the JSON API under /api/ with the header Authorization: Bearer TOKEN.":
        "Les scripts utilisent l'API JSON sous /api/ avec l'en-tête Authorization: Bearer "
        "JETON.",
    "Copy this token now: it is shown only once.":
        "Copiez ce jeton maintenant : il n'est affiché qu'une fois.",
    "A token is set. It is stored hashed and cannot be shown again.":
        "Un jeton est défini. Il est stocké haché et ne peut plus être affiché.",
    "No token is set: the API refuses every call.":
        "Aucun jeton n'est défini : l'API refuse tous les appels.",
    "Replace the API token? Scripts using the old one will stop working.":
        "Remplacer le jeton d'API ? Les scripts qui utilisent l'ancien ne marcheront plus.",
    "Create a new token": "Créer un nouveau jeton",
    "Revoke the token": "Révoquer le jeton",
    # dashboard
    "Today": "Aujourd'hui",
    "Last 7 days": "7 derniers jours",
    "Last 24 hours": "Dernières 24 heures",
    "Calls in the last 24 hours": "Appels des dernières 24 heures",
    "Calls in the last 7 days": "Appels des 7 derniers jours",
    "rang": "ont sonné",
    "blocked": "bloqués",
    "voicemail": "messagerie",
    "challenged": "mis à l'épreuve",
    "Burst mode": "Mode rafale",
    "Off (disabled in the settings).": "Arrêté (désactivé dans les réglages).",
    "ON since {time}: {n} different unknown callers. Unknown callers hear the spoof-shield "
    "message.":
        "ACTIF depuis {time} : {n} appelants inconnus différents. Les inconnus entendent le "
        "message anti-usurpation.",
    "Off: no wave of unknown callers right now.":
        "Arrêté : pas de vague d'appelants inconnus en ce moment.",
    "Lines": "Lignes",
    "No line has reported its state yet (is the gateway running?).":
        "Aucune ligne n'a encore donné son état (la passerelle tourne-t-elle ?).",
    "Newest voicemail": "Derniers messages",
    "{n} new": "{n} à écouter",
    "registered": "enregistrée",
    "registering": "enregistrement en cours",
    "unregistered": "non enregistrée",
    "failed": "en échec",
    "unknown": "inconnu",
    "All voicemail": "Tous les messages",
    "No voicemail.": "Aucun message.",
    "Screening is paused until {time}: every call rings.":
        "Le filtrage est en pause jusqu'à {time} : tous les appels sonnent.",
    "Resume": "Reprendre",
    # call log
    "Number": "Numéro",
    "Date": "Date",
    "Action": "Action",
    "{n} calls": "{n} appels",
    "No calls match.": "Aucun appel ne correspond.",
    "Block": "Bloquer",
    "Allow": "Autoriser",
    "pass": "sonnerie",
    "reject": "rejet",
    "announce": "message",
    "challenge": "épreuve",
    "unknown action {value}": "action inconnue {value}",
    "{value} is not a date (YYYY-MM-DD)": "{value} n'est pas une date (AAAA-MM-JJ)",
    "{value} is not a phone number": "{value} n'est pas un numéro de téléphone",
    "rang through": "a sonné",
    "rejected ({code} {text})": "rejeté ({code} {text})",
    "message played ({prompt})": "message diffusé ({prompt})",
    "sent to voicemail": "envoyé en messagerie",
    "challenged (press a key)": "mis à l'épreuve (appuyer sur une touche)",
    "default block action": "action de blocage par défaut",
    # confirmation
    "Block {number}?": "Bloquer le {number} ?",
    "Allow {number}?": "Autoriser le {number} ?",
    "{number} will be added to the block list; calls from it will get {action}.":
        "{number} sera ajouté à la liste noire ; ses appels recevront {action}.",
    "{number} will be added to the allow list; calls from it will ring through.":
        "{number} sera ajouté à la liste blanche ; ses appels sonneront.",
    "It will be removed from the {list} list.": "Il sera retiré de la liste {list}.",
    "It is already on the {list} list; the entry will be updated.":
        "Il est déjà sur la liste {list} ; l'entrée sera mise à jour.",
    "Warning: it also matches {entry} on the allow list, which is checked first, so its calls "
    "will still ring.":
        "Attention : il correspond aussi à {entry} sur la liste blanche, vérifiée en premier ; "
        "ses appels sonneront donc quand même.",
    "It also matches {entry} on the {list} list.":
        "Il correspond aussi à {entry} sur la liste {list}.",
    "Label (optional)": "Libellé (facultatif)",
    "from the call log": "depuis le journal d'appels",
    "Not a number": "Pas un numéro",
    "allow": "blanche",
    "block": "noire",
    # lists
    "Add an entry": "Ajouter une entrée",
    "Number or pattern": "Numéro ou motif",
    "A number (06 12 34 56 78, +44…), a prefix (0162*), a pattern (+33 6 ?? ?? ?? ??) or a "
    "regular expression (re:…)":
        "Un numéro (06 12 34 56 78, +44…), un préfixe (0162*), un motif (+33 6 ?? ?? ?? ??) ou "
        "une expression régulière (re:…)",
    "Kind": "Type",
    "work it out": "le deviner",
    "exact": "numéro exact",
    "prefix": "préfixe",
    "glob": "motif",
    "regex": "expression régulière",
    "Label": "Libellé",
    "Empty: the default block action ({action}). Or pass, reject:CODE, announce[:PROMPT], "
    "voicemail[:PROMPT], challenge":
        "Vide : l'action de blocage par défaut ({action}). Sinon pass, reject:CODE, "
        "announce[:MESSAGE], voicemail[:MESSAGE], challenge",
    "Expires": "Expire",
    "Empty: never. A duration (2h, 7d) or a date and time (2026-12-31T18:00)":
        "Vide : jamais. Une durée (2h, 7d) ou une date et heure (2026-12-31T18:00)",
    "Only for the next call": "Seulement pour le prochain appel",
    "{n} entries": "{n} entrées",
    "No entries.": "Aucune entrée.",
    "next call only": "prochain appel seulement",
    "expires {time}": "expire le {time}",
    "Remove {pattern}?": "Retirer {pattern} ?",
    "Edit entry": "Modifier l'entrée",
    "Entry saved.": "Entrée enregistrée.",
    "{pattern} added to the {list} list.": "{pattern} ajouté à la liste {list}.",
    "{pattern} removed from the {list} list.": "{pattern} retiré de la liste {list}.",
    "manual": "ajouté à la main",
    "default: {action}": "par défaut : {action}",
    "contact": "contact",
    "auto": "épreuve réussie",
    "known": "appelant connu",
    "api": "API",
    "Permit next call…": "Laisser passer le prochain appel…",
    "Permit next call": "Laisser passer le prochain appel",
    "Permit next call from a number…": "Laisser passer le prochain appel d'un numéro…",
    "The next call from this number rings through whatever the rules say; then the permission "
    "is used up.":
        "Le prochain appel de ce numéro sonnera quelles que soient les règles ; ensuite la "
        "permission est consommée.",
    "Valid for": "Valable",
    "A duration (2h, 7d) or a date and time; default one day":
        "Une durée (2h, 7d) ou une date et heure ; un jour par défaut",
    "Permit": "Laisser passer",
    "permit next call": "prochain appel autorisé",
    "The next call from {number} will ring.": "Le prochain appel du {number} sonnera.",
    "Waiting for their call": "En attente de leur appel",
    # rules and settings
    "Pause screening": "Mettre le filtrage en pause",
    "Resume screening now": "Reprendre le filtrage maintenant",
    "For": "Pendant",
    "Unit": "Unité",
    "minutes": "minutes",
    "hours": "heures",
    "Pause": "Pause",
    "Screening paused.": "Filtrage en pause.",
    "Screening resumed.": "Filtrage repris.",
    "Rules, in order": "Règles, dans l'ordre",
    "Checked after the allow and block lists; the first enabled rule that matches decides.":
        "Vérifiées après les listes blanche et noire ; la première règle active qui "
        "correspond décide.",
    "Priority": "Priorité",
    "Delete this rule?": "Supprimer cette règle ?",
    "Add a rule": "Ajouter une règle",
    "Add the rule": "Ajouter la règle",
    "Parameters (only those of the chosen kind are used):":
        "Paramètres (seuls ceux du type choisi servent) :",
    "Rule saved.": "Règle enregistrée.",
    "Rule added.": "Règle ajoutée.",
    "Rule deleted.": "Règle supprimée.",
    "number_type": "type de numéro",
    "country": "pays",
    "telemarketing": "démarchage",
    "verstat_failed": "STIR/SHAKEN échoué",
    "quiet_hours": "heures calmes",
    "types": "types",
    "regions": "pays",
    "mode": "mode",
    "allow_only": "seuls ces pays sonnent",
    "outside_hours_only": "seulement hors des heures légales",
    "start": "début",
    "end": "fin",
    "days": "jours",
    "0 = Monday … 6 = Sunday, separated by commas":
        "0 = lundi … 6 = dimanche, séparés par des virgules",
    "Country codes such as FR, BE, GB, separated by commas":
        "Codes pays comme FR, BE, GB, séparés par des virgules",
    "Settings": "Réglages",
    "Unknown callers": "Appelants inconnus",
    "mode pass": "laisser sonner",
    "mode greylist": "liste grise (rappeler pour passer)",
    "mode challenge": "épreuve (appuyer sur une touche)",
    "mode voicemail": "messagerie",
    "Default block action": "Action de blocage par défaut",
    "Challenge digit": "Touche de l'épreuve",
    "Repeated calls": "Appels répétés",
    "Burst of unknown callers": "Rafale d'appelants inconnus",
    "Greylist": "Liste grise",
    "max_calls": "appels au plus",
    "window_minutes": "fenêtre (minutes)",
    "distinct_callers": "appelants différents",
    "duration_minutes": "durée (minutes)",
    "min_minutes": "délai minimum (minutes)",
    "action": "alors",
    "Save the settings": "Enregistrer les réglages",
    "Settings saved.": "Réglages enregistrés.",
    # test a number
    "What would Ringfence do with a call from this number? Nothing is logged.":
        "Que ferait Ringfence d'un appel de ce numéro ? Rien n'est enregistré.",
    "Caller name (optional)": "Nom de l'appelant (facultatif)",
    "Time (optional, default now)": "Heure (facultatif, maintenant par défaut)",
    "Test": "Tester",
    "Step": "Étape",
    "Rule": "Règle",
    "Number type": "Type de numéro",
    "Unknown caller": "Appelant inconnu",
    # voicemail and prompts
    "Download": "Télécharger",
    "{n} messages, {used} MB of {cap} MB used; when full, callers can no longer leave a message.":
        "{n} messages, {used} Mo utilisés sur {cap} Mo ; une fois plein, les appelants ne "
        "peuvent plus laisser de message.",
    "Mark heard": "Marquer écouté",
    "Mark unheard": "Marquer non écouté",
    "Delete this message?": "Supprimer ce message ?",
    "Voicemail deleted.": "Message supprimé.",
    "Your greeting and prompts": "Votre annonce et vos messages",
    "Prompts": "Messages",
    "Record your own messages and upload them here; callers hear them instead of the built-in "
    "voice.":
        "Enregistrez vos propres messages et déposez-les ici ; les appelants les entendront à "
        "la place de la voix intégrée.",
    "Language": "Langue",
    "Saved in {folder}.": "Enregistrés dans {folder}.",
    "Prompt": "Message",
    "WAV file (PCM, at most {mb} MB)": "Fichier WAV (PCM, {mb} Mo au plus)",
    "Upload": "Envoyer",
    "built-in": "intégré",
    "Choose a language.": "Choisissez une langue.",
    "Choose a prompt from the list.": "Choisissez un message dans la liste.",
    "Choose a WAV file.": "Choisissez un fichier WAV.",
    "Prompt {name} ({lang}) saved.": "Message {name} ({lang}) enregistré.",
    "greeting": "annonce d'accueil",
    "challenge_passed": "épreuve réussie",
    "goodbye": "au revoir",
    "spoof_shield": "anti-usurpation",
    "not_in_service": "numéro hors service",
    "closed": "fermé",
    "connecting": "mise en relation (après l'épreuve)",
    # import / export
    "Import of {name}": "Import de {name}",
    "{added} added, {dup} already present, {rej} rejected":
        "{added} ajoutés, {dup} déjà présents, {rej} refusés",
    "Line": "Ligne",
    "Text": "Texte",
    "Why": "Raison",
    "… and {n} more rejected lines.": "… et {n} autres lignes refusées.",
    "Contacts": "Contacts",
    "{cards} contacts read, {added} numbers allowed, {rej} rejected":
        "{cards} contacts lus, {added} numéros autorisés, {rej} refusés",
    "Import numbers (CSV)": "Importer des numéros (CSV)",
    "One number or pattern per line, optionally followed by a comma and a label.":
        "Un numéro ou motif par ligne, suivi si besoin d'une virgule et d'un libellé.",
    "Into the list": "Dans la liste",
    "Action for blocked numbers (optional)": "Action pour les numéros bloqués (facultatif)",
    "CSV file": "Fichier CSV",
    "Import": "Importer",
    "Import contacts (vCard)": "Importer des contacts (vCard)",
    "Every phone number of every contact goes on the allow list, labelled with the name.":
        "Chaque numéro de chaque contact va sur la liste blanche, avec son nom pour libellé.",
    ".vcf file": "Fichier .vcf",
    "Import contacts": "Importer les contacts",
    "Export": "Exporter",
    "Block list (CSV)": "Liste noire (CSV)",
    "Allow list (CSV)": "Liste blanche (CSV)",
    "Choose the allow or block list.": "Choisissez la liste blanche ou noire.",
    "Choose a CSV file.": "Choisissez un fichier CSV.",
    "Choose a .vcf file.": "Choisissez un fichier .vcf.",
    "This file has no vCard in it.": "Ce fichier ne contient aucune vCard.",
}
