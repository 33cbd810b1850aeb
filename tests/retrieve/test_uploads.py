"""Visitor uploads: per-session isolation, zip safety, limits, labels and names."""
from __future__ import annotations

import hashlib
import re
import stat
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from fixtures import encode, export_tiny_resnet, gallery_pairs, make_gallery, no_progress, picture, retrieve_handlers, services_for, spec_for, zip_with

from senet_demo import uploads
from senet_demo.config import Limits
from senet_demo.uploads import SESSIONS_ROOT, UploadError, ingest, new_session_dir, remove_session_dir

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def files_under(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def write_images(folder, names, first_seed=0) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.write_bytes(encode(picture(first_seed + i), "PNG" if name.lower().endswith(".png") else "JPEG"))
        paths.append(path)
    return paths


@pytest.fixture
def session(tmp_path):
    folder = tmp_path / "outside" / "session"
    folder.mkdir(parents=True)
    return folder


# --- session folders -----------------------------------------------------------------------------------------


def test_two_sessions_keep_their_uploads_apart(tmp_path):
    alpha_src = write_images(tmp_path / "a", ["cat.jpg"], 0)
    beta_src = write_images(tmp_path / "b", ["dog.jpg", "owl.png"], 10)
    a, b = new_session_dir(), new_session_dir()
    try:
        items_a, _ = ingest(alpha_src, a, "alpha")
        items_b, _ = ingest(beta_src, b, "beta")
        assert files_under(a) == {"alpha/cat.jpg"}
        assert files_under(b) == {"beta/dog.jpg", "beta/owl.png"}
        assert all(item.path.parent.parent == a for item in items_a)
        assert all(item.path.parent.parent == b for item in items_b)
        assert {item.digest for item in items_a}.isdisjoint(item.digest for item in items_b)
        # the stored bytes are the uploaded ones, and the digest is theirs
        assert items_a[0].digest == hashlib.sha256(alpha_src[0].read_bytes()).hexdigest()
        assert items_a[0].path.read_bytes() == alpha_src[0].read_bytes()
    finally:
        remove_session_dir(a)
        remove_session_dir(b)


def test_session_dirs_are_private_unguessable_and_removable(tmp_path):
    dirs = [new_session_dir() for _ in range(20)]
    try:
        assert len(set(dirs)) == 20
        for folder in dirs:
            assert folder.is_dir() and folder.parent.resolve() == SESSIONS_ROOT.resolve()
            assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0  # other local users cannot list it
            # The folder name is what keeps others from finding the files. Require >= 128 bits: 32 characters
            # of at least 4 bits each after the fixed prefix (tempfile's own suffix is 8 characters, ~41 bits).
            random_part = folder.name.removeprefix("session-")
            assert len(random_part) >= 32
        assert len({d.name[:20] for d in dirs}) == 20  # the leading characters are random, not a counter
        write_images(dirs[0] / "label", ["x.jpg"])
    finally:
        for folder in dirs:
            remove_session_dir(folder)
    assert not any(folder.exists() for folder in dirs)
    remove_session_dir(None)  # nothing to remove: no error


# --- untrusted zips -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("evil", ["../evil.jpg", "../../evil.jpg", "ok/../../evil.jpg", "..\\evil.jpg",
                                  "C:/evil.jpg", "ABSOLUTE"])
def test_zip_entries_pointing_outside_reject_the_whole_zip(tmp_path, session, evil):
    target = tmp_path / "abs" / "evil.jpg"
    name = str(target) if evil == "ABSOLUTE" else evil
    assert name.startswith("/") or ".." in name or ":" in name
    archive = zip_with(tmp_path / "upload.zip", {"good/fine.jpg": encode(picture(1), "JPEG", quality=92),
                                                 name: encode(picture(2), "JPEG", quality=92)})
    with pytest.raises(UploadError, match="rejected"):
        ingest([archive], session)
    assert files_under(session) == set()  # not even the good image: the zip is refused as a whole
    assert not target.exists()
    assert [p for p in tmp_path.rglob("*evil*")] == []  # the parents of the session dir included


def test_a_corrupt_zip_is_an_upload_error(tmp_path, session):
    data = encode(picture(3), "JPEG", quality=92)
    archive = zip_with(tmp_path / "upload.zip", {"cats/a.jpg": data}, zipfile.ZIP_STORED)
    raw = bytearray(archive.read_bytes())
    at = raw.index(data[100:116])
    raw[at:at + 16] = bytes(16)  # damage the member's bytes: its CRC no longer matches
    archive.write_bytes(bytes(raw))
    assert zipfile.is_zipfile(archive)
    with pytest.raises(UploadError):
        ingest([archive], session)
    assert files_under(session) == set()


def test_non_images_are_skipped_with_a_message(tmp_path, session):
    archive = zip_with(tmp_path / "upload.zip", {
        "cats/a.jpg": encode(picture(1), "JPEG", quality=92),
        "cats/fake.jpg": b"plain text with an image suffix",
        "notes.txt": b"not an image at all",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "__MACOSX/cats/._a.jpg": b"\x00\x05\x16\x07 resource fork",
    })
    readme = tmp_path / "readme.txt"
    readme.write_text("a loose non-image")
    loose_fake = tmp_path / "loose.png"
    loose_fake.write_bytes(b"not a PNG")
    photo = write_images(tmp_path / "src", ["photo.png"], 7)[0]

    items, messages = ingest([archive, readme, loose_fake, photo], session)
    assert sorted(item.id for item in items) == ["cats/a.jpg", "uploaded/photo.png"]
    assert files_under(session) == {"cats/a.jpg", "uploaded/photo.png"}
    assert messages[0].startswith("Added 2 image(s)")
    for skipped in ("fake.jpg", "notes.txt", "readme.txt", "loose.png"):
        assert sum(skipped in m and m.startswith("Skipped") for m in messages) == 1, (skipped, messages)
    assert not any("DS_Store" in m or "._a.jpg" in m for m in messages)  # OS litter is dropped quietly


# --- limits ---------------------------------------------------------------------------------------------------


def test_too_many_files_are_refused(tmp_path, session):
    limits = Limits(max_upload_files=2)
    loose = write_images(tmp_path / "src", ["a.jpg", "b.jpg", "c.jpg"])
    with pytest.raises(UploadError, match="[Tt]oo many"):
        ingest(loose, session, limits=limits)
    archive = zip_with(tmp_path / "three.zip", {p.name: p.read_bytes() for p in loose})
    with pytest.raises(UploadError, match="[Tt]oo many"):
        ingest([archive], session, limits=limits)
    assert files_under(session) == set()
    items, _ = ingest(loose[:2], session, limits=limits)  # at the limit: accepted
    assert len(items) == 2


def test_too_many_bytes_are_refused(tmp_path, session):
    loose = write_images(tmp_path / "src", ["a.jpg", "b.jpg"])
    sizes = [p.stat().st_size for p in loose]
    limits = Limits(max_upload_total_bytes=sum(sizes) - 1)
    with pytest.raises(UploadError, match="too large"):
        ingest(loose, session, limits=limits)
    archive = zip_with(tmp_path / "two.zip", {p.name: p.read_bytes() for p in loose})
    with pytest.raises(UploadError):
        ingest([archive], session, limits=limits)
    assert files_under(session) == set()
    items, _ = ingest(loose, session, limits=Limits(max_upload_total_bytes=sum(sizes)))
    assert len(items) == 2


def test_one_oversized_image(tmp_path, session):
    big, small = write_images(tmp_path / "src", ["big.png", "small.jpg"])
    limits = Limits(max_image_bytes=big.stat().st_size - 1)
    assert small.stat().st_size <= limits.max_image_bytes
    # in a zip the member is read with a cap, and the upload is refused
    with pytest.raises(UploadError, match="big.png"):
        ingest([zip_with(tmp_path / "u.zip", {"big.png": big.read_bytes()})], session, limits=limits)
    # as a loose file it is skipped with the reason; the others still go in
    items, messages = ingest([big, small], session, limits=limits)
    assert [item.path.name for item in items] == ["small.jpg"]
    assert any(m.startswith("Skipped big.png") for m in messages)


# --- labels and names ----------------------------------------------------------------------------------------


def test_zip_folders_become_labels(tmp_path, session):
    archive = zip_with(tmp_path / "upload.zip", {
        "cats/a.jpg": encode(picture(1), "JPEG", quality=92),
        "dogs/b.png": encode(picture(2), "PNG"),
        "top.jpg": encode(picture(3), "JPEG", quality=92),
        "holiday/birds/c.jpg": encode(picture(4), "JPEG", quality=92),
        "we ird$%label/d.jpg": encode(picture(5), "JPEG", quality=92),
    })
    items, _ = ingest([archive], session, label="mine")
    labels = {item.path.name: item.label for item in items}
    assert labels == {"a.jpg": "cats", "b.png": "dogs", "top.jpg": "mine", "c.jpg": "birds", "d.jpg": "we_ird_label"}
    for item in items:
        assert item.path.parent == session / item.label


def test_names_and_labels_are_sanitised(tmp_path, session):
    src = tmp_path / "src"
    nasty = write_images(src, ["my photo;rm -rf ~ (1).JPG", "$(reboot)`id`.png"])
    items, _ = ingest(nasty, session, label="../../etc/pass wd")
    assert len(items) == 2
    for item in items:
        relative = item.path.relative_to(session)  # raises if it escaped
        assert len(relative.parts) == 2 and all(SAFE.match(part) for part in relative.parts), relative
        assert item.label == relative.parts[0] == "etc_pass_wd"
    assert sorted(files_under(session)) == sorted(item.path.relative_to(session).as_posix() for item in items)


def test_same_name_twice_keeps_both(tmp_path, session):
    first = write_images(tmp_path / "one", ["cat.jpg"], 1)[0]
    second = write_images(tmp_path / "two", ["cat.jpg"], 2)[0]
    items, _ = ingest([first, second], session)
    assert len({item.path for item in items}) == 2
    assert [item.path.read_bytes() for item in items] == [first.read_bytes(), second.read_bytes()]


# --- through the Retrieve tab's handlers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    root = tmp_path_factory.mktemp("tab")
    model = export_tiny_resnet(root / "model", 0)
    gallery = make_gallery(root / "gallery", {"cat": 2, "dog": 2})
    services = services_for(spec_for(model), root, gallery)
    return services, retrieve_handlers(services)


def test_one_sessions_upload_never_appears_in_anothers_results(tmp_path, tab):
    services, handlers = tab
    secret, other = write_images(tmp_path / "src", ["secret.png", "other.png"], 50)
    state_a, note_a = handlers["on_upload"]([str(secret)], "secret", None)
    state_b, _ = handlers["on_upload"]([str(other)], "other", None)
    try:
        assert "Added 1 image(s)" in note_a and state_a["dir"] != state_b["dir"]
        gallery_size = len(services.gallery())

        answer_a, _ = handlers["on_retrieve"](str(secret), "ensemble", 20, state_a, progress=no_progress)
        results_a = gallery_pairs(answer_a)
        assert len(results_a) == gallery_size + 1
        path, caption = results_a[0]
        assert caption.startswith("secret · 1.000") and path.startswith(state_a["dir"])

        for state in (state_b, None):  # another visitor, and a visitor without uploads
            answer, _ = handlers["on_retrieve"](str(secret), "ensemble", 20, state, progress=no_progress)
            results = gallery_pairs(answer)
            assert len(results) == gallery_size + (1 if state else 0)
            assert not any(p.startswith(state_a["dir"]) or c.startswith("secret") for p, c in results)

        folder_a = Path(state_a["dir"])
        state_a, _ = handlers["on_clear"](state_a)
        assert state_a is None and not folder_a.exists()
    finally:
        remove_session_dir(state_a["dir"] if state_a else None)
        remove_session_dir(state_b["dir"])


def test_a_refused_first_upload_leaves_no_session_folder(tmp_path, tab, monkeypatch):
    _, handlers = tab
    root = tmp_path / "sessions"
    monkeypatch.setattr(uploads, "SESSIONS_ROOT", root)
    archive = zip_with(tmp_path / "evil.zip", {"../evil.jpg": encode(picture(1), "JPEG", quality=92)})
    with pytest.raises(gr.Error, match="rejected"):
        handlers["on_upload"]([str(archive)], "x", None)
    assert list(root.iterdir()) == []


def test_uploaded_features_never_reach_the_shared_disk_store(tmp_path, tab):
    services, handlers = tab
    (mine,) = write_images(tmp_path / "src", ["mine.png"], 70)
    state, _ = handlers["on_upload"]([str(mine)], "mine", None)
    try:
        stored_before = set(services.features.cache_dir.rglob("*.npz"))
        answer, _ = handlers["on_retrieve"](str(mine), "ensemble", 3, state, progress=no_progress)
        assert gallery_pairs(answer)[0][1].startswith("mine · 1.000")
        digest = state["items"][0].digest
        new_files = set(services.features.cache_dir.rglob("*.npz")) - stored_before
        assert not any(digest in p.name for p in new_files), "an upload's features were written to disk"
    finally:
        handlers["on_clear"](state)


def test_a_session_holds_a_bounded_number_of_images(tmp_path, monkeypatch):
    root = tmp_path / "m"
    services = services_for(spec_for(export_tiny_resnet(root / "model", 0)), root, make_gallery(root / "g", {"a": 2}),
                            limits=Limits(max_upload_files=3))
    handlers = retrieve_handlers(services)
    images = write_images(tmp_path / "src", [f"{i}.png" for i in range(5)], 80)
    state, _ = handlers["on_upload"]([str(p) for p in images[:3]], "x", None)
    try:
        with pytest.raises(gr.Error, match="at most 3 images"):
            handlers["on_upload"]([str(images[3])], "x", state)
        assert len(state["items"]) == 3 and len(list(Path(state["dir"]).rglob("*.png"))) == 3
    finally:
        handlers["on_clear"](state)


def test_a_zip_listing_a_huge_number_of_entries_is_refused(tmp_path, session):
    members = {f"junk/{i}.txt": b"" for i in range(10 * 4 + 1)}
    archive = zip_with(tmp_path / "many.zip", members)
    with pytest.raises(UploadError, match="many.zip lists 41 files; at most 4 images"):
        ingest([archive], session, limits=Limits(max_upload_files=4))


def test_skip_messages_are_capped(tmp_path, session):
    members = {f"notes/{i}.txt": b"text" for i in range(25)}
    members["photos/a.png"] = encode(picture(3), "PNG")
    items, messages = ingest([zip_with(tmp_path / "mixed.zip", members)], session)
    assert len(items) == 1
    assert sum(m.startswith("Skipped") for m in messages) == uploads.MAX_SKIP_MESSAGES
    assert any("15 more" in m for m in messages)


def test_stale_session_folders_are_swept_and_fresh_ones_kept(tmp_path, monkeypatch):
    import os
    import time

    monkeypatch.setattr(uploads, "SESSIONS_ROOT", tmp_path / "sessions")
    old, fresh = new_session_dir(), new_session_dir()
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    assert uploads.sweep_stale_sessions() == 1
    assert not old.exists() and fresh.exists()


# --- sizes: the zip's directory first, the bytes themselves second --------------------------------------------


def _count_member_reads(monkeypatch) -> list:
    opened = []
    original = zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    return opened


def test_a_member_declared_too_big_is_refused_before_anything_is_extracted(tmp_path, session, monkeypatch):
    from fixtures import tiny_png, zip_with

    limits = Limits(max_image_bytes=50_000)
    archive = zip_with(tmp_path / "big.zip", {"beach/a.png": tiny_png(1), "beach/huge.png": bytes(60_000)})
    assert archive.stat().st_size < 5_000  # small on disk, large unpacked
    opened = _count_member_reads(monkeypatch)
    with pytest.raises(UploadError, match=r"big.zip was rejected: 'beach/huge.png' unpacks to 60,000 bytes, "
                                          r"and an image may have at most 50,000 bytes"):
        ingest([archive], session, limits=limits)
    assert opened == [] and files_under(session) == set()


def test_a_member_whose_directory_entry_lies_is_refused_while_reading(tmp_path, session):
    """The directory claims a few hundred bytes, the data inflates to more: only the claimed bytes are read,
    and the mismatch refuses the zip."""
    from fixtures import lying_zip, tiny_png

    good = tiny_png(2)
    archive = lying_zip(tmp_path / "liar.zip", "beach/liar.png", bytes(200_000), declared=len(good))
    assert zipfile.ZipFile(archive).getinfo("beach/liar.png").file_size == len(good)
    with pytest.raises(UploadError, match=r"^liar.zip is damaged or does not match its own directory \(Bad CRC"):
        ingest([archive], session, limits=Limits(max_image_bytes=50_000))
    assert files_under(session) == set()


def test_a_zip_with_ten_thousand_tiny_images_is_refused_unread(tmp_path, session, monkeypatch):
    from fixtures import tiny_png, zip_with

    archive = zip_with(tmp_path / "many.zip", {f"tiny/{i:05d}.png": tiny_png(0) for i in range(10_000)})
    opened = _count_member_reads(monkeypatch)
    with pytest.raises(UploadError, match="many.zip lists 10,000 files; at most 200 images go in one upload"):
        ingest([archive], session)
    assert opened == [] and files_under(session) == set()


def test_more_images_than_allowed_but_a_short_directory_are_refused_unread(tmp_path, session, monkeypatch):
    from fixtures import tiny_png, zip_with

    archive = zip_with(tmp_path / "some.zip", {f"tiny/{i}.png": tiny_png(0) for i in range(7)})
    opened = _count_member_reads(monkeypatch)
    with pytest.raises(UploadError, match="Too many files in some.zip: 7 images, at most 5"):
        ingest([archive], session, limits=Limits(max_upload_files=5))
    assert opened == []


def test_a_loose_file_over_the_image_limit_is_skipped_unread(tmp_path, session):
    big, small = write_images(tmp_path / "src", ["big.png", "small.jpg"])
    limits = Limits(max_image_bytes=small.stat().st_size)
    assert big.stat().st_size > limits.max_image_bytes
    items, messages = ingest([big, small], session, limits=limits)
    assert [item.path.name for item in items] == ["small.jpg"]
    assert any(m.startswith("Skipped big.png:") and "an image may have" in m for m in messages), messages


def test_an_open_but_idle_session_loses_its_uploads_after_the_time_limit(tmp_path, monkeypatch):
    """Gradio's own state expiry (the tab left open) calls the same delete callback as a session's end."""
    import datetime

    from gradio.state_holder import StateHolder

    from senet_demo.ui import retrieve_tab

    root = tmp_path / "m"
    services = services_for(spec_for(export_tiny_resnet(root / "model", 0)), root, make_gallery(root / "g", {"a": 2}),
                            limits=Limits(upload_session_ttl_s=600))
    with gr.Blocks() as blocks:
        retrieve_tab.build(services)
    handlers = retrieve_handlers(services)
    (state_block,) = [b for b in blocks.blocks.values() if isinstance(b, gr.State) and b.time_to_live != float("inf")]
    assert state_block.time_to_live == 600

    (image,) = write_images(tmp_path / "src", ["mine.png"], 90)
    state, _ = handlers["on_upload"]([str(image)], "mine", None)
    folder = Path(state["dir"])
    holder = StateHolder()
    holder.set_blocks(blocks)
    session = holder["visitor"]
    session[state_block._id] = state  # what Gradio does after the upload event

    holder.delete_all_expired_state()  # still within its time: kept
    assert folder.is_dir() and any(folder.iterdir())

    ttl, created = session._state_ttl[state_block._id]
    session._state_ttl[state_block._id] = (ttl, created - datetime.timedelta(seconds=601))
    holder.delete_all_expired_state()  # Gradio runs this every second
    assert not folder.exists()


# --- fail safe: names the problem, stores what a file is, bounded per session, removable ----------------------


def test_an_encrypted_zip_is_named_as_encrypted(tmp_path, session):
    archive = zip_with(tmp_path / "secret.zip", {"cats/a.jpg": encode(picture(1), "JPEG", quality=92)})
    raw = bytearray(archive.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # general-purpose flags, bit 0: encrypted
        at = raw.index(signature)
        raw[at + flags_at] |= 0x01
    archive.write_bytes(bytes(raw))
    with pytest.raises(UploadError) as refused:
        ingest([archive], session)
    assert str(refused.value) == ("secret.zip is encrypted (password-protected), and this app cannot open it; nothing "
                                  "was added. Re-create the zip without a password and try again.")
    assert files_under(session) == set()


def test_a_folder_name_with_a_colon_is_a_legal_label(tmp_path, session):
    archive = zip_with(tmp_path / "trip.zip", {"Trip: Rome 2024/colosseum.jpg": encode(picture(1), "JPEG", quality=92),
                                               "Trip: Rome 2024/forum.jpg": encode(picture(2), "JPEG", quality=92)})
    items, _ = ingest([archive], session)
    assert [(item.label, item.path.name) for item in items] == [("Trip_Rome_2024", "colosseum.jpg"),
                                                               ("Trip_Rome_2024", "forum.jpg")]


def test_a_truncated_zip_is_named_as_a_damaged_zip(tmp_path, session):
    archive = zip_with(tmp_path / "cut.zip", {f"cats/{i}.jpg": encode(picture(i), "JPEG", quality=92) for i in range(3)})
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # the directory at the end is gone
    with pytest.raises(UploadError) as refused:
        ingest([archive], session)
    assert str(refused.value) == ("cut.zip is a zip archive that is truncated or damaged (its directory is missing); "
                                  "nothing was added. Re-create the zip and upload it again.")


@pytest.mark.parametrize("named, content, stored", [("drawing.svg", "PNG", ".png"), ("photo.png", "JPEG", ".jpg"),
                                                    ("scan", "PNG", ".png"), ("x.tiff.jpg", "GIF", ".gif")])
def test_an_upload_is_stored_under_the_suffix_of_its_format(tmp_path, session, named, content, stored):
    source = tmp_path / named
    source.write_bytes(encode(picture(1), content))
    items, _ = ingest([source], session)
    assert [item.path.suffix for item in items] == [stored]
    assert items[0].path.read_bytes() == source.read_bytes()


def test_a_session_is_capped_in_bytes(tmp_path, session):
    photos = write_images(tmp_path / "src", [f"p{i}.png" for i in range(4)])
    sizes = [p.stat().st_size for p in photos]
    limits = Limits(max_session_bytes=sum(sizes[:3]))
    ingest(photos[:2], session, limits=limits)
    ingest(photos[2:3], session, limits=limits)  # exactly at the cap
    with pytest.raises(UploadError, match=r"^Your session would hold .* more than the .* one session may keep"):
        ingest(photos[3:], session, limits=limits)
    assert len(files_under(session)) == 3


def test_forget_removes_the_session_and_the_servers_copies_only(tmp_path, monkeypatch):
    gradio_root = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(gradio_root))
    copies = []
    for i in range(2):  # Gradio keeps each upload in a folder named by its hash
        copy = gradio_root / f"hash{i}" / f"photo{i}.jpg"
        copy.parent.mkdir(parents=True)
        copy.write_bytes(encode(picture(i), "JPEG", quality=92))
        copies.append(copy)
    other_visitor = gradio_root / "hash9" / "theirs.jpg"
    other_visitor.parent.mkdir(parents=True)
    other_visitor.write_bytes(b"x")
    outside = tmp_path / "operator" / "gallery.jpg"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    session = new_session_dir()
    ingest(copies, session)

    removed = uploads.forget(session, [*map(str, copies), str(outside), str(gradio_root / ".." / "operator" /
                                                                             "gallery.jpg"), None])
    assert removed == 2
    assert not session.exists() and not any(c.exists() or c.parent.exists() for c in copies)
    assert other_visitor.exists() and outside.exists()


def test_a_full_disk_while_storing_adds_nothing_and_says_so(tmp_path, session, monkeypatch):
    import errno

    photos = write_images(tmp_path / "src", ["a.png", "b.png", "c.png"])
    real_write = Path.write_bytes
    calls = []

    def fills_up(self, data):
        calls.append(self)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills_up)
    with pytest.raises(UploadError) as refused:
        ingest(photos, session)
    assert str(refused.value) == ("The server could not store your upload (No space left on device); nothing was "
                                  "added. Try again later.")
    assert files_under(session) == set()
