"""The web page in a real browser: Debian's headless Chromium driven by Playwright, against the real server on
127.0.0.1. Skipped, with the reason, where either is missing (``.ci/run`` installs Chromium).

Screenshots go to ``$MOSAICREC_UI_SCREENSHOTS`` when set (the issue note's pictures), else a temp folder."""

import os
import shutil
from pathlib import Path

import pytest

from tests.serving.test_server import serve
from tests.serving.uiworld import ADMIN, HOSTILE_TITLE, READ, WRITE, build

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install .[dev])")
CHROMIUM = os.environ.get("MOSAICREC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.xdist_group("ui"),
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")]
# Chromium's own background traffic is refused on a closed network: these flags keep it to loopback
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-browser")
    w = build(tmp)
    shots = Path(os.environ.get("MOSAICREC_UI_SCREENSHOTS") or tmp / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with serve(w.service, model_dir="main", report_dir=str(w.report)) as client:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            assert browser.version.split(".")[0] in os.popen(f"{CHROMIUM} --version").read()  # the system one
            try:
                yield w, str(client.base_url).rstrip("/"), browser, shots
            finally:
                browser.close()


def open_page(site, key):
    w, base, browser, _ = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/ui")
    page.fill("#key", key)
    page.click("#key-form button")
    page.wait_for_selector("#users button.user")
    return page, errors


def pick(page, user):
    """Find the user by id prefix and open them."""
    page.fill("#user-q", user)
    page.click(f"button.user[data-user='{user}']")


def card_ids(page, box):
    return page.eval_on_selector_all(f"#{box} .card", "cs => cs.map(c => c.dataset.item)")


def wait_cards(page, box, before=None):
    """Wait until the box shows cards (different from ``before`` when given); their ids."""
    page.wait_for_function("([box, before]) => { const ids = [...document.querySelectorAll(`#${box} .card`)]"
                           ".map(c => c.dataset.item).join(','); return ids && ids !== before; }",
                           arg=[box, ",".join(before) if before else ""])
    return card_ids(page, box)


def settle(page):
    """Wait until the page has no call in flight (it counts them on ``<body data-pending>``)."""
    page.wait_for_function("() => document.body.dataset.pending === '0'")


def topics_of(page, box):
    return page.eval_on_selector_all(f"#{box} .card .attrs", "ps => ps.map(p => p.textContent.match(/topic: (\\w+)/)[1])")


def test_a_reader_sees_a_users_history_and_list_with_posters_audio_and_reasons(site):
    page, errors = open_page(site, READ)
    page.fill("#user-q", "u0")
    page.wait_for_selector("button.user[data-user='u03']")
    page.click("button.user[data-user='u00']")  # u00 likes space items
    recs = wait_cards(page, "recs")
    assert len(recs) == 10 and topics_of(page, "recs")[:2] == ["space", "space"]
    history = wait_cards(page, "history")
    assert len(history) == 4 and set(topics_of(page, "history")) == {"space"}
    # posters arrive through the keyed media route as blob: URLs and decode to real images
    page.wait_for_function("() => [...document.querySelectorAll('#recs .poster img')].filter(i => i.complete && "
                           "i.naturalWidth > 0).length >= 5")
    assert page.eval_on_selector("#recs .poster img", "i => i.src").startswith("blob:")
    why = page.eval_on_selector_all("#recs .card .why", "ps => ps.map(p => p.textContent)")
    assert why and why[0].startswith("similar to ")
    # a reader gets no like buttons, no upload form, and cannot switch models
    assert page.locator("#recs button.like").count() == 0 and page.is_hidden("#add-box")
    assert page.is_disabled("#model")
    # the report's table and plot
    page.wait_for_selector("#report-box:not([hidden]) img.plot")
    assert page.eval_on_selector("img.plot", "i => i.naturalWidth") > 0
    assert {r.strip() for r in page.eval_on_selector_all("#report-table td:first-child", "ts => ts.map(t => t.textContent)")
            } == {"mostpop", "ease", "content-knn", "content-knn − text", "content-knn − image"}
    # what each modality is worth: one row per modality, its contribution and interval
    worth = page.eval_on_selector_all("#worth-table tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert worth[0][2:4] == ["modality", "ndcg@10 contribution"] and {w[2] for w in worth[1:]} == {"text", "image"}
    assert all(w[4].startswith("[") and w[3][0] in "+−" for w in worth[1:])
    page.screenshot(path=str(site[3] / "1-reader-list-history-report.png"), full_page=True)
    assert not errors


def test_audio_plays_from_the_media_root(site):
    page, errors = open_page(site, READ)
    pick(page, "u02")  # u02 likes music
    wait_cards(page, "recs")
    page.wait_for_function("() => { const a = document.querySelector('#recs audio'); return a && "
                           "a.src.startsWith('blob:'); }")
    duration = page.evaluate("() => new Promise(ok => { const a = document.querySelector('#recs audio'); "
                             "a.preload = 'auto'; a.onloadedmetadata = () => ok(a.duration); a.load(); })")
    assert abs(duration - 1.0) < 0.05  # the generated clips are 1 s
    assert not errors


def test_switches_change_the_list_diversity_filters_and_search(site):
    page, errors = open_page(site, READ)
    pick(page, "u01")  # u01 likes cooking
    plain = wait_cards(page, "recs")
    assert topics_of(page, "recs")[:2] == ["cooking", "cooking"]
    # the list for the filter's first value is held back until after the list for "music" arrives: the
    # page must keep the newer list, not the one that answered last
    page.evaluate("() => { const real = window.fetch; let n = 0; window.fetch = (url, o) => "
                  "String(url).includes('/recommendations') && n++ === 0 ? "
                  "new Promise(ok => setTimeout(ok, 800)).then(() => real(url, o)) : real(url, o); }")
    page.select_option("#filter-key", "topic")
    page.select_option("#filter-value", "music")
    settle(page)
    assert all("topic: music" in t for t in page.eval_on_selector_all(
        "#recs .card .attrs", "ps => ps.map(p => p.textContent)"))
    filtered = card_ids(page, "recs")
    assert len(filtered) == 6  # every music item, and only those
    page.select_option("#filter-key", "")
    settle(page)
    assert card_ids(page, "recs") == plain
    page.evaluate("() => { const d = document.getElementById('diversity'); d.value = '1'; "
                  "d.dispatchEvent(new Event('change')); }")
    settle(page)
    diverse = card_ids(page, "recs")
    assert len(diverse) == 10 and diverse != plain  # MMR at full diversity re-orders the list
    assert page.text_content("#diversity-v") == "1"
    page.fill("#search-q", "bread, pasta and other things to eat")
    page.click("#search-form button")
    wait_cards(page, "results")
    assert topics_of(page, "results")[0] == "cooking"
    page.screenshot(path=str(site[3] / "2-filters-diversity-search.png"), full_page=True)
    assert not errors


def test_likes_and_dislikes_change_the_list(site):
    page, errors = open_page(site, WRITE)
    pick(page, "u04")  # u04 likes cooking
    before = wait_cards(page, "recs")
    top = before[0]
    page.click(f"#recs .card[data-item='{top}'] button.dislike")
    after = wait_cards(page, "recs", before)
    assert top not in after  # a disliked item leaves the list at once
    page.wait_for_function(f"() => document.querySelector('#history .card[data-item=\"{top}\"] .disliked')")
    # liking music items from a search pulls music into the list
    page.fill("#search-q", "a jazz trio and a violin concerto")
    page.click("#search-form button")
    results = wait_cards(page, "results")
    music = [i for i in results if i.startswith("music")][:3]
    for n, item in enumerate(music):
        current = card_ids(page, "recs")
        page.click(f"#results .card[data-item='{item}'] button.like")
        page.wait_for_function(f"() => document.querySelector('#history .card[data-item=\"{item}\"] .liked')")
        if n == len(music) - 1:
            wait_cards(page, "recs", current)
    assert "music" in topics_of(page, "recs")[:5]
    page.screenshot(path=str(site[3] / "3-after-likes-and-a-dislike.png"), full_page=True)
    assert not errors


def test_an_item_is_added_by_upload_and_shown_with_its_neighbours(site):
    w, _, _, shots = site
    page, errors = open_page(site, WRITE)
    from tests.serving.uiworld import clip, poster

    image, sound = w.media.parent / "new-poster.png", w.media.parent / "new-clip.wav"
    poster(image, (20, 30, 90), 3)
    clip(sound, 330.0, seconds=0.5)
    page.fill("#add-id", "space-new")
    page.fill("#add-title", "a rocket lands on the moon")
    page.fill("#add-text", "astronauts land a rocket on the moon")
    page.fill("#add-attrs", "topic=space; year=2024")
    page.set_input_files("#add-image", str(image))
    page.set_input_files("#add-audio", str(sound))
    page.click("#add-form button")
    page.wait_for_selector("#results .card[data-item='space-new']")
    page.wait_for_function("() => document.querySelector(\"#results .card[data-item='space-new'] audio\")"
                           "?.src.startsWith('blob:')")
    neighbours = card_ids(page, "results")[1:]
    assert neighbours and all(i.startswith("space") for i in neighbours[:3])
    page.wait_for_function("() => document.querySelector(\"#results .card[data-item='space-new'] img\")?.naturalWidth > 0")
    stored = w.service.item("space-new")
    assert stored["image"].startswith(str(w.media / "uploads")) and stored["attributes"]["topic"] == "space"
    assert stored["audio"].startswith(str(w.media / "uploads")) and stored["audio"].endswith(".wav")
    page.screenshot(path=str(shots / "4-added-item.png"), full_page=True)
    assert not errors


def test_a_video_is_uploaded_played_and_shown_by_its_first_frame(site):
    pytest.importorskip("av")
    from tests.serving.test_video_serving import clip as video_clip

    w, _, _, shots = site
    page, errors = open_page(site, WRITE)
    video = video_clip(w.media.parent / "trailer.webm", 2)  # VP9 + Opus: blue frames, a 660 Hz tone, 1 s
    page.fill("#add-id", "space-trailer")
    page.fill("#add-title", "a rocket launch, the trailer")
    page.fill("#add-text", "astronauts launch a rocket to the moon")
    page.set_input_files("#add-video", str(video))
    page.click("#add-form button")
    card = "#results .card[data-item='space-trailer']"
    page.wait_for_selector(card)
    page.wait_for_function(f"() => document.querySelector(\"{card} img\")?.naturalWidth > 0")
    blue = page.evaluate(f"""() => {{ const img = document.querySelector("{card} img");
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const [r, gr, b] = g.getImageData(c.width * 3 >> 2, c.height >> 1, 1, 1).data;
        return b > 150 && r < 100 && gr < 100; }}""")
    assert blue  # the card image is the video's first frame
    page.wait_for_function(f"() => document.querySelector(\"{card} video\")?.src.startsWith('blob:')")
    duration = page.evaluate(f"""() => new Promise((ok, no) => {{ const v = document.querySelector("{card} video");
        v.preload = 'auto'; v.onloadedmetadata = () => ok(v.duration); v.onerror = () => no(v.error.message);
        v.load(); }})""")
    assert abs(duration - 1.0) < 0.1  # the browser decodes and plays it
    stored = w.service.item("space-trailer")
    assert stored["video"].startswith(str(w.media / "uploads")) and stored["video"].endswith(".webm")
    page.screenshot(path=str(shots / "6-video-item.png"), full_page=True)
    assert not errors


def test_an_admin_switches_to_a_scenario_model_and_scenarios_change_the_list(site):
    page, errors = open_page(site, ADMIN)
    assert not page.is_disabled("#model")
    page.select_option("#model", "by-scenario")
    page.wait_for_selector("#scenario-box:not([hidden])")
    pick(page, "u03")  # u03 likes space: every music and cooking item is unseen
    wait_cards(page, "recs")
    for scenario, topic in (("tab-music", "music"), ("tab-cooking", "cooking")):
        page.select_option("#scenario", scenario)
        settle(page)
        assert scenario in page.text_content("#recs-note")
        assert set(topics_of(page, "recs")[:5]) == {topic}, scenario
    page.screenshot(path=str(site[3] / "5-scenario-model.png"), full_page=True)
    page.select_option("#model", "main")  # back, for any later test
    page.wait_for_selector("#scenario-box[hidden]", state="attached")
    assert not errors


def test_hostile_titles_stay_text(site):
    page, errors = open_page(site, READ)
    page.fill("#search-q", "tomato soup")
    page.click("#search-form button")
    page.wait_for_selector("#results .card[data-item='evil']")
    assert page.eval_on_selector("#results .card[data-item='evil'] h3", "h => h.textContent") == HOSTILE_TITLE
    assert page.locator("#results img[src='x']").count() == 0
    assert page.evaluate("() => window.__xss") is None
    assert not errors
