"""Datasets byte for byte: every file `prepare` and `simulate` write, against pinned digests.

The digests were computed on the code before the preparation modules were split
(commit 7be8a27), so a refactor of the engine, the log reading, the external sort
or the presets that changes one byte of a dataset fails here. Each case prepares
tiny hand-made files (written by this module, so no other test's fixtures move
the digests) in the test's own folder with relative paths: `meta.json` records
the paths it was given, and relative ones are the same in every run. Nothing is
excluded: no written file holds a timestamp or an absolute path.

Update a digest only for a change meant to alter the dataset, and say so in the commit.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import TINY_WORLD
from widedeep.cli import main
from widedeep.data.kuairand import LOG_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS, prepare_kuairand
from widedeep.data.movielens import prepare_movielens
from widedeep.data.prepare import prepare_impressions
from widedeep.data.simulator import simulate_dataset
from widedeep.data.source import ErrorPolicy, PrepareOptions
from widedeep.data.user_log import LogConfig, LogSource, prepare_log

ONE_SHARD = {"train": 1, "test": 1}

# Out of time order, a same-time tie, an exact duplicate (line 6), a dislike, a user absent
# from the user table (line 14, skipped) and a label that is not 0 or 1 (line 16, skipped).
LOG = """who,sku,ts,clicked,hidden,page,hour,score,dwell
1,100,2024-05-01 10:00:00,1,0,home,10,0.5,30
2,100,2024-05-01 10:00:00,0,0,home,10,1.5,0
1,101,2024-05-01 10:05:00,0,0,search,10,,1
1,102,2024-05-01 10:05:00,0,1,search,10,2.0,0
1,102,2024-05-01 10:05:00,0,1,search,10,2.0,0
2,101,2024-05-01 11:00:00,1,0,home,11,0.25,12
3,103,2024-05-01 09:00:00,1,0,cart,9,3.0,7
1,100,2024-05-01 12:00:00,1,0,home,12,0.5,40
3,100,2024-05-01 12:00:00,0,0,home,12,1.0,0
2,102,2024-05-01 08:30:00,0,0,search,8,0.75,2
4,103,2024-05-01 12:30:00,1,0,cart,12,1.25,9
3,101,2024-05-01 13:00:00,1,1,home,13,0.5,3
9,100,2024-05-01 13:10:00,1,0,home,13,0.5,3
4,100,2024-05-01 13:20:00,0,0,search,13,0.5,3
4,101,2024-05-01 13:30:00,7,0,search,13,0.5,3
2,103,2024-05-01 14:00:00,1,0,cart,14,2.5,5
1,103,2024-05-01 14:30:00,0,0,home,14,1.75,4
"""
USERS = """who,city,age,spend
1,paris,31,12.5
2,lyon,25,
3,paris,47,3.0
4,nice,25,8.25
"""
ITEMS = """sku,brand,price,size
100,acme,9.5,1
101,zeta,20.0,2
102,acme,,1
103,omni,4.0,3
"""

EXPECTED: dict[str, dict[str, str]] = {
    "log": {
        "meta.json": "bb17770242d7901428ec8974d91e07c394f25fa702d79f670e1242584e48f591",
        "prepare_config.json": "2bc1419410fd56d170b5e04013898e38faef15d55bf3db39794c2d126b03456b",
        "schema.json": "22a59892b6692fef8fbbfdad6117ff3f9a4c3166c7612bb4f3f73e6a7f66f1bb",
        "tables/click_events/row.npy": "3271702cd1486eacd233c54ca145feb686abfe0ea80fbad9994c50d4e99458af",
        "tables/dislike_events/row.npy": "116e2270dc2934c667dba7a264c01ffd589a233b2fb3b9d7ddd58752803a47a0",
        "tables/items/brand.npy": "7e0527c0ce082a8285c11b484998bf3beb05a7e04ff0a9fb479c0b7a81e336db",
        "tables/items/price.npy": "693dd707eee7b7f21d52e7f573c854116869d78fb51c52744764a93263967ca6",
        "tables/items/size.npy": "fa84106bcfb2fa3e6d1ed3de5e641ee6a8362563a07e2478f9d609aa85fc2ace",
        "tables/items/sku.npy": "347531d7dd18b5da8128099824f65f494c4f087b1c5080b317f17dd931e03480",
        "tables/unclick_events/row.npy": "3c6981649c6978d04ec757f2b7979f05a629a546de3401a36c3dd29c338cd51e",
        "tables/users/age.npy": "fe02f30bfe335c7db7dacf7bc8c859eeec2d9cdb498174fa09bff27c2c0ccb98",
        "tables/users/city.npy": "5595a88f74e6b172758aa518e3384e77c186ab63ad079930fc9cb8ce64d1a65b",
        "tables/users/spend.npy": "eebd63146ec2570f28b29d9566d36ecfbbc97ab9fed2210a42a48c69f1fb593e",
        "test/part-00000-of-00002.tfrecord": "640ae2b03de2ca4d766a420016ac4d9e606495a120d1a061fc90a897ac36527f",
        "test/part-00001-of-00002.tfrecord": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "train/part-00000-of-00008.tfrecord": "dffc638deeaca4abfe208d84b1e2ec4136b199d920eeb906a34e24a5fa657e2d",
        "train/part-00001-of-00008.tfrecord": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "train/part-00002-of-00008.tfrecord": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "train/part-00003-of-00008.tfrecord": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "train/part-00004-of-00008.tfrecord": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "train/part-00005-of-00008.tfrecord": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "train/part-00006-of-00008.tfrecord": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "train/part-00007-of-00008.tfrecord": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    },
    "log_spilled": {
        "meta.json": "67da833fc610bdfd54677f1eeb4a74cfc5e933c7736b1292a64b0d0ff471cc40",
        "prepare_config.json": "e529a88720737a31adbd9e07ec11f26f66bb21609f1e99778420f3ff331529a0",
        "schema.json": "5419c16c3ecd484cbabc9e3a17d5eeb09193502cf1d34ff1ea43762fd2c3022c",
        "tables/click_events/row.npy": "c0154c6caf8aa676093ebc2d1b916f02b6a2b168ac824a67a3309d7a95cc5ac6",
        "tables/dislike_events/row.npy": "116e2270dc2934c667dba7a264c01ffd589a233b2fb3b9d7ddd58752803a47a0",
        "tables/items/brand.npy": "7e0527c0ce082a8285c11b484998bf3beb05a7e04ff0a9fb479c0b7a81e336db",
        "tables/items/price.npy": "693dd707eee7b7f21d52e7f573c854116869d78fb51c52744764a93263967ca6",
        "tables/items/size.npy": "fa84106bcfb2fa3e6d1ed3de5e641ee6a8362563a07e2478f9d609aa85fc2ace",
        "tables/items/sku.npy": "347531d7dd18b5da8128099824f65f494c4f087b1c5080b317f17dd931e03480",
        "tables/unclick_events/row.npy": "3c6981649c6978d04ec757f2b7979f05a629a546de3401a36c3dd29c338cd51e",
        "tables/users/age.npy": "fe02f30bfe335c7db7dacf7bc8c859eeec2d9cdb498174fa09bff27c2c0ccb98",
        "tables/users/city.npy": "5595a88f74e6b172758aa518e3384e77c186ab63ad079930fc9cb8ce64d1a65b",
        "tables/users/spend.npy": "eebd63146ec2570f28b29d9566d36ecfbbc97ab9fed2210a42a48c69f1fb593e",
        "test/part-00000-of-00001.tfrecord": "1ae0bb29207cfe075046ccad77518f9fcadcbbc38617640c3a1467bf6e95a384",
        "train/part-00000-of-00001.tfrecord": "ec539dccbae518549e2c98ef7deadd7fedf79f8ec504db85e0caf7857b325948",
    },
    "log_bare": {
        "meta.json": "f7a698cd09372abf623730b5c0f10b8e57ae2f4cabdaadafd8b399130ac38dda",
        "prepare_config.json": "1d89d70ac6ea65ede0561f7f99fd05d94cc931cba0af7f8371ade9f6e8b1ba60",
        "schema.json": "71da07bc8f1c34f16c57738ad29e6324670e52e3c87a0111b4749f68826db47c",
        "tables/click_events/row.npy": "665272766c8c5bd2d2623cd495b32f3d02330c4a8fde80945e28b30679557014",
        "tables/dislike_events/row.npy": "e734dac55ea9fbbe782af2d8c02c3c5992131906228afb2aaaf137d6f3ed74db",
        "tables/items/sku.npy": "347531d7dd18b5da8128099824f65f494c4f087b1c5080b317f17dd931e03480",
        "tables/unclick_events/row.npy": "3d1e5cc0c501992c052b9c762a3dda8961486f7bfa3040c1fc531e6f2a681056",
        "test/part-00000-of-00001.tfrecord": "efa1e846b08c3896fc8d59b67031ef146dd05911e046445c6127d7fccb50d788",
        "train/part-00000-of-00001.tfrecord": "7debbdc38d009d183f5f0b901d0bd17efed72ba69dffd7be35136a5d4d2407d7",
    },
    "movielens": {
        "meta.json": "86cf4ece9a1bcf4d63afaf53cd53584b46ba858c0d119f6d5f21392fad181367",
        "schema.json": "01d7bdd61ba3b68166ae928a75c0e7bbb0f023a068185294bcaa9697ef667bf1",
        "tables/click_events/row.npy": "8553fb30d41a7c4b139a17c45e39079cc78d06d7aedd38631e6f81ac06ce068f",
        "tables/dislike_events/row.npy": "16ce3579de63bc66efaea992be8b419b07b98cf1f558941f2c5f4b0abd50fe78",
        "tables/items/genre.npy": "e35e8c746576876a9bde7ddd218a55a4e2f5e4142c6fcbc5bac4454f68621c4b",
        "tables/items/movie_id.npy": "f2a5e8c1a9516699e39d4de7c397ee6282898e81e4159b602eaa70002a722406",
        "tables/items/release_year.npy": "07162886d88cd62e27ffaaa02d440cfc6fb2735fdb979329257d6e8699014925",
        "tables/unclick_events/row.npy": "f94104994e2df6fcb82fb05a9f59088d0942f64826cabc523f7f7bd6c23660cf",
        "tables/users/age.npy": "0169d9ef62d57c23fddadfc9a16c9cdda25407f6912067427e2ab1f68fc43253",
        "tables/users/gender.npy": "1064dd80f23b016e2e0476a87ce7dd67080b7166cbb3922faa8c7a1c37b98fe9",
        "tables/users/occupation.npy": "508f92afd5059fae028ccdcadf3d970efaff2dcf18fad9763dc2d2e26cb6d73f",
        "tables/users/zip3.npy": "a34b895f5ea8362b7aaed3862de606e49121b75910991c02d86072987d417d83",
        "test/part-00000-of-00001.tfrecord": "6433fa0ba009d6c0f66dcfabb13ec571752daa5484634c1c8b8f99bc3f6de848",
        "train/part-00000-of-00001.tfrecord": "3d3f16ad1b435d37dbe0e269bf3aafc9ea2f21bc1395b36a2d543f45c1ffd29c",
    },
    "kuairand": {
        "meta.json": "f7ebd7c209dc76eb9f9c5517fd9f7a9f5c1faba30ca584ed1651d061a42730d7",
        "schema.json": "2e1365260c94b5938a4b54abe5dd800d348999e7a0b36e957eb3816f3d46b151",
        "tables/click_events/row.npy": "5097b7c95860bd0cab266deeb4bcfb62f71c70d42be06e3f0566c11e477f9a56",
        "tables/dislike_events/row.npy": "79a3ec9e5013300721fe2cc296c3d7016af2098b51ea46190de859dc1de8fb8e",
        "tables/items/author_id.npy": "c292f6a6a90855da9e92aaf0b90901e5c766b57c9ea057347357e93da0bfa408",
        "tables/items/log_duration.npy": "6543fced28e7e729fab139c66ba3e316e1cd92b830b204110a5ed8804c0766bf",
        "tables/items/music_type.npy": "79f1ab613bb1e20f8664ad5acdc18c7395ef2507d4f9df4bbba76bf8bee3bcc3",
        "tables/items/tag.npy": "5065a245f803ae47f39564b0e083c3b77d6f091e52d89f346eaa82426060e5e5",
        "tables/items/upload_type.npy": "6783f33f19d76d6a036d288b41d6e34aaa8f814fbdc7a8c365fa8bb8066af631",
        "tables/items/video_id.npy": "e3a318e90a85f9c3e7687a90a21d24aea0cdc3845b3a4c04ff177222cb3f60ec",
        "tables/items/video_type.npy": "f1c790539413fdf6cc5a10ed4ae4686136b71c70ed2d1f3322393b5ee433a395",
        "tables/unclick_events/row.npy": "bf786772bf2f1f443090fd98345d9b125d25a83b3bfe396521c95893afb81b53",
        "tables/users/fans_user_num_range.npy": "f3d93ec9396049947897e87e9e5a66a43db2050ea99c68ce24bf795119eec998",
        "tables/users/follow_user_num_range.npy": "97ee0ed438556f3b829dca6342751be57abae374ae06f7bcc683d18f29fb0159",
        "tables/users/friend_user_num_range.npy": "b72ae01b67a733fdf50be4459d786de95f11680c6ab27763ff7ff9e555ac9974",
        "tables/users/is_live_streamer.npy": "5065a245f803ae47f39564b0e083c3b77d6f091e52d89f346eaa82426060e5e5",
        "tables/users/is_lowactive_period.npy": "b1a808899ea5d99346d6a322b12f28d8382294938e51a56500e892a976a85d3f",
        "tables/users/is_video_author.npy": "0c72932d66796edd271410d42db785acec4281ff23691cf9d7f03d1ddb496c27",
        "tables/users/log_fans_user_num.npy": "ba886222cbbae892d852fd48df0a9f97c6f6dd845cf81cf542a583fa9afa2508",
        "tables/users/log_follow_user_num.npy": "b0b59b4a2bce8f56195b0b652c53b553f4622d1af0efcf5dee80597b1bfd8dcf",
        "tables/users/log_friend_user_num.npy": "e38ee4cf265f0bfbac7fd5f0dbd17e0929a310bf7a2ecbbd267a390841d5d6a1",
        "tables/users/log_register_days.npy": "dd6e6cbbe1003246f3ddb1a820df484172ac0b0997e4a1ea8fc2826aefa4f77b",
        "tables/users/onehot_feat0.npy": "b1a808899ea5d99346d6a322b12f28d8382294938e51a56500e892a976a85d3f",
        "tables/users/onehot_feat1.npy": "5065a245f803ae47f39564b0e083c3b77d6f091e52d89f346eaa82426060e5e5",
        "tables/users/onehot_feat10.npy": "5065a245f803ae47f39564b0e083c3b77d6f091e52d89f346eaa82426060e5e5",
        "tables/users/onehot_feat11.npy": "0c72932d66796edd271410d42db785acec4281ff23691cf9d7f03d1ddb496c27",
        "tables/users/onehot_feat12.npy": "b1a808899ea5d99346d6a322b12f28d8382294938e51a56500e892a976a85d3f",
        "tables/users/onehot_feat13.npy": "5065a245f803ae47f39564b0e083c3b77d6f091e52d89f346eaa82426060e5e5",
        "tables/users/onehot_feat14.npy": "0c72932d66796edd271410d42db785acec4281ff23691cf9d7f03d1ddb496c27",
        "tables/users/onehot_feat15.npy": "b1a808899ea5d99346d6a322b12f28d8382294938e51a56500e892a976a85d3f",
        "tables/users/onehot_feat16.npy": "5065a245f803ae47f39564b0e083c3b77d6f091e52d89f346eaa82426060e5e5",
        "tables/users/onehot_feat17.npy": "0c72932d66796edd271410d42db785acec4281ff23691cf9d7f03d1ddb496c27",
        "tables/users/onehot_feat2.npy": "0c72932d66796edd271410d42db785acec4281ff23691cf9d7f03d1ddb496c27",
        "tables/users/onehot_feat3.npy": "b1a808899ea5d99346d6a322b12f28d8382294938e51a56500e892a976a85d3f",
        "tables/users/onehot_feat4.npy": "5065a245f803ae47f39564b0e083c3b77d6f091e52d89f346eaa82426060e5e5",
        "tables/users/onehot_feat5.npy": "0c72932d66796edd271410d42db785acec4281ff23691cf9d7f03d1ddb496c27",
        "tables/users/onehot_feat6.npy": "b1a808899ea5d99346d6a322b12f28d8382294938e51a56500e892a976a85d3f",
        "tables/users/onehot_feat7.npy": "5065a245f803ae47f39564b0e083c3b77d6f091e52d89f346eaa82426060e5e5",
        "tables/users/onehot_feat8.npy": "0c72932d66796edd271410d42db785acec4281ff23691cf9d7f03d1ddb496c27",
        "tables/users/onehot_feat9.npy": "b1a808899ea5d99346d6a322b12f28d8382294938e51a56500e892a976a85d3f",
        "tables/users/register_days_range.npy": "fa162555d1de10c31ecb1e9c7e82465efda985772164303504536835b96f79ec",
        "tables/users/user_active_degree.npy": "b83d42672fea4c794e4a8a3723b333f5bfcf783fef151af2cf1cfb261498dfc3",
        "test/part-00000-of-00001.tfrecord": "98b47fbcbe03098d026729fa0725c64f0c9dc9b5738a2b33f9fd7b503d45ad7f",
        "train/part-00000-of-00001.tfrecord": "73f6fe218cd705d73362b3419dca4021c4da206c2c1ab22e5b72c264a8d2edcd",
    },
    "simulator": {
        "meta.json": "5044849f149a3df3a489bc24943ae74854b7ac93e45078e4c8779c7c6476dec7",
        "schema.json": "0f36c760173ca2b6330c9940f43c9e873013f62e054120a680f77547eff404be",
        "test/part-00000-of-00001.tfrecord": "49a38753d8de369cea7c1aeb7c443e0c5ae74ff035eefd5b8b9b32de97db5ee4",
        "train/part-00000-of-00002.tfrecord": "8a55d750e05afa99dc68dd8016dd5169b4b56b505a0ae6b5881d468757f7d7c6",
        "train/part-00001-of-00002.tfrecord": "6fdd4b97d142805e468f6760eb2edda1d2fa9c670ed7ad02f22dd381456eb0ce",
    },
}


def digests(root: Path) -> dict[str, str]:
    """`{path relative to root: sha256}` of every file under `root`."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("log.csv").write_text(LOG)
    Path("users.csv").write_text(USERS)
    Path("items.csv").write_text(ITEMS)
    return tmp_path


def write_csv(path: str, rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def log_config(**overrides) -> LogConfig:
    settings = dict(
        logs=["log.csv"],
        user="who",
        item="sku",
        time="ts",
        label="clicked",
        dislike="hidden",
        context=["page", "hour", "score"],
        users="users.csv",
        items="items.csv",
    )
    settings.update(overrides)
    return LogConfig(**settings)


def check(name: str, root: Path) -> None:
    got = digests(root)
    if os.environ.get("WIDEDEEP_DIGESTS_TO"):  # how the pinned digests were made
        with open(os.environ["WIDEDEEP_DIGESTS_TO"], "a") as f:
            f.write(json.dumps({name: got}) + "\n")
    assert got == EXPECTED[name]


def test_prepare_log_cli(here, capsys):
    args = ["prepare", "log", "--log", "log.csv", "--user", "who", "--item", "sku", "--time", "ts",
            "--label", "clicked", "--dislike", "hidden", "--context", "page,hour,score",
            "--users", "users.csv", "--items", "items.csv", "--out", "out", "--max-length", "3"]  # fmt: skip
    assert main(args) == 0
    check("log", here / "out")


def test_prepare_log_sorted_out_of_core_by_user_with_item_history(here):
    # "4.0" is user 4: the fast reader gives the file to the exact one, which parses it.
    late = [
        "1,101,2024-05-01 09:59:00,1,0,home,9,1,1",
        "4.0,102,2024-05-01 15:00:00,1,0,cart,15,1,1",
    ]
    Path("late.csv").write_text("\n".join([LOG.splitlines()[0], *late]) + "\n")
    options = PrepareOptions(
        max_length=2, split_by="user", test_fraction=0.3, item_history=True, num_shards=ONE_SHARD
    )
    policy = ErrorPolicy(options.on_error)
    source = LogSource(log_config(logs=["log.csv", "late.csv"]), policy)
    meta = prepare_impressions(source, "out", options, policy, chunk_rows=3, run_rows=4)
    assert meta["spilled"]
    check("log_spilled", here / "out")


def test_prepare_log_without_side_tables(here):
    prepare_log(log_config(users=None, items=None, dislike=None), "out", num_shards=ONE_SHARD)
    check("log_bare", here / "out")


def test_prepare_movielens_100k(here):
    folder = Path("ml")
    folder.mkdir()
    ratings = [(1, 10, 5, 300), (2, 10, 3, 100), (1, 11, 2, 100), (1, 12, 3, 100),
               (1, 13, 4, 200), (2, 11, 5, 300), (3, 12, 1, 50), (3, 10, 4, 400)]  # fmt: skip
    # Bad: a rating out of range, a short row, an item that is not an integer; "4.0" is 4.
    bad = "3\t13\t9\t500\n1\tx\n1\tx\t3\t10\n2\t12\t4.0\t600\n"
    lines = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings) + bad
    (folder / "u.data").write_text(lines)
    (folder / "u.user").write_text(
        "1|24|M|technician|85711\n2|60|F|writer|94043\n3|17|M|student|3206x\n2|33|F|other|1\n"
        "6|40.0|F|other|1\n"  # 40.0 is 40
    )
    items = []
    for m in (10, 11, 12, 13, 14):
        flags = ["0"] * 19
        flags[1 + m % 4] = "1.0" if m == 14 else "1"  # 1.0 is 1
        date = "" if m == 12 else f"01-Jan-{1990 + m % 9}"
        items.append(f"{m}|Café {m} ({1990 + m % 9})|{date}||http://x/{m}|{'|'.join(flags)}\n")
    (folder / "u.item").write_bytes("".join(items).encode("latin-1"))
    prepare_movielens(folder, "out", num_shards=ONE_SHARD, split_by="user", max_length=2)
    check("movielens", here / "out")


def test_prepare_kuairand(here):
    rows = [(1, 20, 5000, 1, 0, 1), (2, 21, 4000, 0, 0, 2), (1, 22, 5000, 0, 1, 1),
            (3, 20, 6000, 1, 0, 0), (2, 20, 7000, 1, 0, 2), (1, 21, 8000, 0, 0, 1),
            (3, 22, 9000, 1, 0, 0), (1, 20, 9500, 1, 0, 1)]  # fmt: skip
    log = [",".join(LOG_COLUMNS)]
    for user, video, t, click, hate, tab in rows:
        values = dict(user_id=user, video_id=video, date=20220425, hourmin=1300 + t // 1000,
                      time_ms=t, is_click=click, is_hate=hate, tab=tab)  # fmt: skip
        log.append(",".join(str(values[c]) for c in LOG_COLUMNS))
    Path("kr_log.csv").write_text("\n".join(log) + "\n")
    users = [list(USER_COLUMNS)]
    for u in (1, 2, 3):
        values = {c: f"{(u + k) % 3}.0" for k, c in enumerate(USER_COLUMNS)}
        values.update(user_id=u, user_active_degree=("full_active", "high_active")[u % 2])
        values.update(follow_user_num_range="(0,10]", fans_user_num_range="[100,1k)")
        values.update(friend_user_num_range="[30,60)", register_days_range="61-90")
        values.update(follow_user_num=10 * u, register_days=100 + u, fans_user_num="")
        users.append([values[c] for c in USER_COLUMNS])
    write_csv("kr_users.csv", users)
    videos = [list(VIDEO_COLUMNS)]
    for v in (20, 21, 22):
        values = dict(video_id=v, author_id=1000 + v % 2, video_type="AD" if v == 20 else "NORMAL",
                      upload_dt="2022-04-10" if v != 21 else "", upload_type="LongImport",
                      video_duration=f"{1000.0 * v}" if v != 22 else "", music_type="9.0",
                      tag=f"{v % 3},{v % 2 + 10}")  # fmt: skip
        videos.append([values[c] for c in VIDEO_COLUMNS])
    write_csv("kr_videos.csv", videos)
    prepare_kuairand(["kr_log.csv"], "kr_users.csv", "kr_videos.csv", "out", num_shards=ONE_SHARD)
    check("kuairand", here / "out")


def test_simulate(here):
    simulate_dataset("out", TINY_WORLD, num_shards={"train": 2, "test": 1})
    check("simulator", here / "out")
