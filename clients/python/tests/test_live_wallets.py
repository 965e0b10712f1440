"""Wallets, accounts, balances and deposit addresses on a live server."""

from __future__ import annotations

import re

import pytest

from strongroom_client import Conflict, Forbidden

from conftest import CHAIN_ID, ETH


def test_wallets_page_by_cursor_in_creation_order(live):
    admin = live.client("admin")
    made = [admin.create_wallet(f"paging-{i}") for i in range(3)]
    everything = list(admin.iter_wallets(page_size=50))
    one_by_one = list(admin.iter_wallets(page_size=1))
    assert [w.id for w in one_by_one] == [w.id for w in everything]
    assert len({w.id for w in everything}) == len(everything)
    ids = [w.id for w in everything]
    assert ids.index(live.wallet) < ids.index(made[0].id) < ids.index(made[1].id) < ids.index(made[2].id)
    first = admin.list_wallets(limit=1)
    assert len(first.items) == 1 and first.next_cursor == first.items[0].id
    # The initiator reads only the wallet its key is scoped to.
    assert [w.id for w in live.client("initiator").iter_wallets()] == [live.wallet]


def test_a_wallet_shows_its_account_and_balances(live):
    viewer = live.client("viewer")
    w = viewer.get_wallet(live.wallet)
    assert w.name == "dev"
    (account,) = w.accounts
    assert (account.network, account.address, account.key) == (
        f"eip155:{CHAIN_ID}",
        live.eth_address,
        live.eth_key,
    )
    eth = [b for b in viewer.balances(live.wallet) if b.asset == ETH]
    assert len(eth) == 1
    assert (eth[0].symbol, eth[0].decimals) == ("ETH", 18)
    assert re.fullmatch(r"\d+", eth[0].on_chain or "")
    assert int(eth[0].on_chain) > 0
    assert eth[0].account == live.eth_address
    # Each amount's decimal twin is the same number in ether.
    whole, _, frac = eth[0].raw["on_chain_decimal"].partition(".")
    assert int(whole + frac.ljust(18, "0")) == int(eth[0].on_chain)


def test_an_account_opened_over_the_api_is_listed(live):
    admin = live.client("admin")
    wallet = admin.create_wallet("opened-over-the-api")
    opened = admin.open_account(wallet.id, f"eip155:{CHAIN_ID}")
    assert re.fullmatch(r"0x[0-9a-fA-F]{40}", opened["address"])
    detail = admin.get_wallet(wallet.id)
    assert [(a.network, a.address) for a in detail.accounts] == [
        (f"eip155:{CHAIN_ID}", opened["address"])
    ]
    # One account per network: a second is refused.
    with pytest.raises(Conflict) as e:
        admin.open_account(wallet.id, f"eip155:{CHAIN_ID}")
    assert e.value.code == "conflict"


def test_the_deposit_address_is_the_wallets_sender(live):
    deposit = live.client("initiator").deposit_address(live.wallet, f"eip155:{CHAIN_ID}")
    assert (deposit.network, deposit.address) == (f"eip155:{CHAIN_ID}", live.eth_address)
    with pytest.raises(Forbidden):
        live.client("viewer").deposit_address(live.wallet, f"eip155:{CHAIN_ID}")
