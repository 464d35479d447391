"""The object graph: one HomeServer holds config, database, stores and services,
built once at startup and handed to every part that needs it."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aiohttp import web

from federation.client import FederationClient, make_ssl_context
from federation.discovery import ServerResolver
from federation.outbound_guard import AddressPolicy, OutboundGuard, TlsTrust
from homeserver.account_data import AccountDataService
from homeserver.accounts.account import AccountService
from homeserver.accounts.auth import AuthService
from homeserver.accounts.login import LoginService
from homeserver.accounts.openid import OpenIdTokens
from homeserver.accounts.passwords import PasswordHasher
from homeserver.accounts.profile import ProfileService
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.uia import UiaService
from homeserver.admin.registration_tokens import RegistrationTokenAdmin
from homeserver.admin.rooms import RoomAdmin
from homeserver.admin.users import UserAdmin
from homeserver.analytics.service import Analytics
from homeserver.api.http import HS_KEY, X_FORWARDED_KEY, serve_matrix
from homeserver.audit import AuditLog
from homeserver.background import cancel_and_wait
from homeserver.clock import Clock
from homeserver.config import UNSERVED_RESOURCES, Config, ListenerConfig
from homeserver.e2ee.cross_signing import CrossSigningService
from homeserver.e2ee.device_lists import DeviceLists
from homeserver.e2ee.edus import DeviceListUpdateEdu, DirectToDeviceEdu, SigningKeyUpdateEdu
from homeserver.e2ee.keys import KeysService
from homeserver.e2ee.remote_keys import RemoteKeys
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.email.threepids import EMAIL, ThreepidService
from homeserver.federation.access import ServerGate
from homeserver.federation.backfill import RoomBackfill
from homeserver.federation.edus import EduRegistry
from homeserver.federation.inbound import InboundTransactions
from homeserver.federation.invites import FederatedInvites
from homeserver.federation.joins import FederatedJoins
from homeserver.federation.keyring import KeyRing
from homeserver.federation.pdu_checks import PduChecks
from homeserver.federation.queries import RemoteProfiles
from homeserver.federation.reads import FederationReads
from homeserver.federation.sender import FederationSender
from homeserver.federation.state_fetch import StateFetcher
from homeserver.filters.service import FilterService
from homeserver.identifiers import LocalServer
from homeserver.media.upkeep import run_upkeep
from homeserver.memory import HeapTrimmer
from homeserver.metrics import Metrics
from homeserver.partners.directory import PartnerDirectory
from homeserver.partners.directory_publisher import DirectoryPublisher
from homeserver.partners.notices import SYSTEM_LOCALPART, ServerNotices
from homeserver.partners.organization import OrganizationProfile
from homeserver.partners.partnerships import Partnerships
from homeserver.partners.policy import FederationPolicy
from homeserver.presence import PresenceEdu, PresenceService, presence_enabled
from homeserver.push.actions import PushActionsIndex
from homeserver.push.delivery import PushDelivery
from homeserver.push.pushers import PusherService
from homeserver.push.service import PushRulesService
from homeserver.ratelimit import RateLimiter
from homeserver.receipts import ReceiptEdu, ReceiptService
from homeserver.records.rooms import RoomRecord
from homeserver.relations.service import RelationsService
from homeserver.rooms.activity import RoomActivity
from homeserver.rooms.aliases import AliasService, DirectoryRights
from homeserver.rooms.creation import RoomCreator
from homeserver.rooms.heads import RoomHeads
from homeserver.rooms.history import RoomHistory
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.persist import EventPersister
from homeserver.rooms.public_rooms import PublicRoomsService
from homeserver.rooms.received import ReceivedEvents
from homeserver.rooms.recent import RecentEvents
from homeserver.rooms.servers import RoomServers
from homeserver.rooms.service import RoomService
from homeserver.rooms.state_reader import RoomStateReader, StateResolver
from homeserver.rooms.upgrade import RoomUpgradeService
from homeserver.rooms.visibility import VisibilityService
from homeserver.search.index import SearchIndex
from homeserver.signing_key import SigningKey, load_signing_key
from homeserver.storage import make_database
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.admin_rooms import AdminRoomStore
from homeserver.storage.admin_users import AdminUserStore
from homeserver.storage.analytics import AnalyticsStore
from homeserver.storage.audit import AuditStore
from homeserver.storage.backfill import BackfillStore
from homeserver.storage.device_list_federation import AnnouncedDeviceStore, RemoteDeviceListStore
from homeserver.storage.device_lists import DeviceListStore
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2ee_keys import E2eeKeyStore
from homeserver.storage.events import EventPositions, EventStore
from homeserver.storage.federation_outbox import FederationOutboxStore
from homeserver.storage.filters import FilterStore
from homeserver.storage.login_tokens import LoginTokenStore
from homeserver.storage.migrations import migrate
from homeserver.storage.organization import OrganizationStore
from homeserver.storage.partner_directory import PartnerDirectoryStore, PublicationStore
from homeserver.storage.partnerships import PartnershipStore
from homeserver.storage.presence import PresenceStore
from homeserver.storage.push_actions import PushActionStore
from homeserver.storage.push_rules import PushRuleStore
from homeserver.storage.pushers import PusherStore
from homeserver.storage.receipts import ReceiptStore
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.relations import RelationStore
from homeserver.storage.rooms import MembershipQueries, RoomStore
from homeserver.storage.search import SearchStore
from homeserver.storage.server_keys import ServerKeyStore
from homeserver.storage.state import StateStore
from homeserver.storage.threepids import ThreepidStore
from homeserver.storage.to_device import ToDeviceStore
from homeserver.storage.uia import UiaStore
from homeserver.storage.user_directory import UserDirectoryStore
from homeserver.storage.users import UserStore
from homeserver.sync.legacy_events import LegacyEventStream
from homeserver.sync.notifier import Notifier
from homeserver.sync.room_tallies import RoomTallies
from homeserver.sync.service import SyncService
from homeserver.sync.streams.account_data import AccountDataStream
from homeserver.sync.streams.device_lists import DeviceListsStream
from homeserver.sync.streams.e2ee_key_counts import E2eeKeyCounts
from homeserver.sync.streams.presence import PresenceStream
from homeserver.sync.streams.receipts import ReceiptsStream
from homeserver.sync.streams.room_events import RoomEventsStream
from homeserver.sync.streams.to_device import ToDeviceStream
from homeserver.sync.streams.typing import TypingStream
from homeserver.sync.unread import UnreadCounter
from homeserver.tags import TagService
from homeserver.typing import TypingEdu, TypingService
from homeserver.user_directory.service import UserDirectory
from homeserver.voip import TurnService

if TYPE_CHECKING:  # built when first used (see the properties), or when configured
    from homeserver.e2ee.key_backup import KeyBackupService
    from homeserver.email.mailer import Mailer
    from homeserver.email.notifier import EmailNotifier
    from homeserver.federation.timestamps import TimestampLookup
    from homeserver.media.fetch import UrlFetcher
    from homeserver.media.preview import UrlPreviewer
    from homeserver.media.remote import FederatedRemoteMedia
    from homeserver.media.repository import MediaRepository
    from homeserver.partners.directory_search import DirectorySearch
    from homeserver.push.inbox import NotificationInbox
    from homeserver.reports import ReportService
    from homeserver.rooms.hierarchy import SpaceHierarchy
    from homeserver.rooms.mutual_rooms import MutualRooms
    from homeserver.rooms.summary import RoomSummaries
    from homeserver.search.service import SearchService
    from homeserver.sync.sliding.service import SlidingSyncService

logger = logging.getLogger(__name__)

SERVER_VERSION = "0.1.0"


class HomeServer:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.local_server = LocalServer(config.server_name)  # is_mine(user_id)
        self.signing_key: SigningKey = load_signing_key(config.resolve_path(config.signing_key_path))
        self._verifying_ssl_context: TlsTrust | None = None  # see _web_ssl_context
        self.db = make_database(config.database, config.resolve_path(config.database.path))
        # stores
        self.users = UserStore(self.db)
        self.devices = DeviceStore(self.db)
        self.registration_tokens = RegistrationTokenStore(self.db)
        self.audit = AuditLog(AuditStore(self.db), self.clock)
        self.uia_store = UiaStore(self.db)
        self.room_store = RoomStore(self.db)
        self.event_store = EventStore(self.db, cache_bytes=config.database.event_cache_mb << 20)
        self.state_store = StateStore(self.db, config.caches.state_entries, config.caches.state_keys)
        self.event_positions = EventPositions(self.db)
        self.membership_queries = MembershipQueries(self.db)
        self.server_keys = ServerKeyStore(self.db)
        # services
        self.metrics = Metrics()
        self.heap_trimmer = HeapTrimmer()  # after big responses (the API middleware)
        self.metrics.caches["events"] = self.event_store.cache_stats
        self.notifier = Notifier()
        self.edus = EduRegistry()  # by EDU type, both directions; registered once their services exist
        self.passwords = PasswordHasher(config.auth.scrypt_n)
        self.ratelimiter = RateLimiter(config.rate_limits, self.clock.monotonic)
        self.auth = AuthService(self.db, self.devices, self.users, self.clock, config.auth)
        users = self.users

        async def account_active(user_id: str) -> bool:
            record = await users.get_user(user_id)
            return record is not None and not record.deactivated

        self.turn = TurnService(config.voip, self.clock)
        # OpenID tokens for third parties (integration managers, widgets), checked over federation.
        self.openid = OpenIdTokens(
            secret=self.signing_key.encode(), server_name=config.server_name, clock=self.clock,
            is_active=account_active,
        )
        self.uia = UiaService(
            store=self.uia_store, db=self.db, users=self.users,
            registration_tokens=self.registration_tokens, passwords=self.passwords,
            ratelimiter=self.ratelimiter, clock=self.clock, server_name=config.server_name,
        )
        self.registration = RegistrationService(
            config=config.registration, server_name=config.server_name, db=self.db,
            users=self.users, registration_tokens=self.registration_tokens, uia=self.uia,
            auth=self.auth, audit=self.audit, passwords=self.passwords, clock=self.clock,
        )
        self.login = LoginService(
            db=self.db, users=self.users, auth=self.auth, audit=self.audit,
            passwords=self.passwords, ratelimiter=self.ratelimiter, server_name=config.server_name,
            client_base_url=config.well_known.client_base_url,
            login_tokens=LoginTokenStore(self.db), clock=self.clock,
        )
        # Partnerships before the client: the policy the client enforces asks them.
        self.partners = Partnerships(
            store=PartnershipStore(self.db), server_name=config.server_name,
            organization_name=config.organization.name, federation=config.federation,
            clock=self.clock, audit=self.audit,
        )  # connected below to the client, the sender and the notices
        self.federation_policy = FederationPolicy(
            mode=config.federation.policy,
            server_name=config.server_name,
            allowed_servers=config.federation.allowed_servers,
            partners=self.partners,
            audit=self.audit,
            monotonic=self.clock.monotonic,
        )
        # Every outbound HTTP connection (federation, keys, well-known, and any future
        # media, preview or push fetch) must use a session from this guard.
        self.outbound_guard = OutboundGuard(
            AddressPolicy.parse(config.outbound.allowed_ranges, config.outbound.denied_ranges)
        )
        self.federation_client = self._make_federation_client()
        self.keyring = KeyRing(
            server_name=config.server_name,
            signing_key=self.signing_key,
            store=self.server_keys,
            client=self.federation_client,
            clock=self.clock,
            trusted_key_servers=config.federation.trusted_key_servers,
            key_validity_ms=config.federation.key_validity_ms,
            old_signing_keys=config.old_signing_keys,
            ratelimiter=self.ratelimiter,
        )
        self.room_servers = RoomServers(server_name=config.server_name, rooms=self.room_store)
        # Daily rollups for the console and Prometheus: told of messages by the event
        # writer (an index, below), of deliveries by the sender, of refusals by the
        # policy and of the partner count by the partnerships.
        self.analytics = Analytics(
            store=AnalyticsStore(self.db), server_name=config.server_name,
            cached_servers=self.room_servers.cached, is_partner=self.partners.is_partner_cached,
            clock=self.clock, system_users=frozenset({f"@{SYSTEM_LOCALPART}:{config.server_name}"}),
            federating=config.federation.enabled,
        )
        self.federation_policy.refusal_listeners.append(self.analytics.refused)
        self.partners.on_active_changed.append(self.analytics.partners_changed)
        self.federation_sender = FederationSender(
            server_name=config.server_name,
            store=FederationOutboxStore(self.db),
            client=self.federation_client,
            events=self.event_store,
            edus=self.edus,
            allow_destination=self.federation_policy.allow_destination,
            clock=self.clock,
            backoff_base_s=config.federation.retry_base_s,
            backoff_cap_s=config.federation.retry_cap_s,
            observer=self.analytics,
        )
        # The room core: state reading, DAG heads, the one writer of events, the PDU
        # checks, and what follows each persisted event.
        self.room_state = RoomStateReader(self.event_store, self.state_store)
        self.state_resolver = StateResolver(self.event_store)
        self.room_heads = RoomHeads(self.room_store, self.event_store)
        # Busy rooms' newest events, read once for all their /sync readers.
        self.recent_events = RecentEvents(self.event_store)
        self.metrics.caches["room_recent_events"] = self.recent_events.stats
        self.metrics.caches["state_snapshots"] = self.state_store.cache_stats
        self.room_activity = RoomActivity(
            rooms=self.room_store, positions=self.event_positions, waker=self.notifier,
            is_mine=self.local_server.is_mine, recent=self.recent_events,
        )
        self.room_activity.listeners.append(self.room_servers.on_event)
        self.room_activity.listeners.append(self.analytics.event_persisted)  # active users known committed
        self.metrics.caches["room_members"] = self.room_activity.member_stats
        self.event_persister = EventPersister(
            db=self.db, clock=self.clock, events=self.event_store, rooms=self.room_store,
            state=self.state_store, reader=self.room_state, resolver=self.state_resolver,
            heads=self.room_heads, activity=self.room_activity, outbox=self.federation_sender,
            servers_in_room=self.room_servers.servers_in_room,
        )
        self.room_activity.stream = lambda: self.event_persister.stream  # replaced at start
        self.pdu_checks = PduChecks(
            keyring=self.keyring, events=self.event_store, reader=self.room_state,
            resolver=self.state_resolver,
        )
        self.received_events = ReceivedEvents(
            events=self.event_store, reader=self.room_state, heads=self.room_heads,
            checks=self.pdu_checks, persister=self.event_persister, outbox=self.federation_sender,
        )
        self.room_service = RoomService(
            server_name=config.server_name, signing_key=self.signing_key, clock=self.clock,
            rooms=self.room_store, events=self.event_store, reader=self.room_state,
            heads=self.room_heads, activity=self.room_activity, persister=self.event_persister,
            received=self.received_events, ignored_users=self._ignored_users,
        )
        self.account_data = AccountDataService(AccountDataStore(self.db))
        self.tags = TagService(self.account_data)  # room tags, as m.tag room account data
        self.membership = MembershipService(
            local=self.local_server, federation_enabled=config.federation.enabled,
            allow_destination=self.federation_policy.allow_destination, users=self.users,
            rooms=self.room_store, events=self.event_store, room_service=self.room_service,
            room_servers=self.room_servers, account_data=self.account_data,
        )  # connected below to what is built after it
        self.accounts = AccountService(
            db=self.db, users=self.users, devices=self.devices, rooms=self.room_store,
            auth=self.auth, passwords=self.passwords, registration=self.registration,
            membership=self.membership,
        )
        self.profiles = ProfileService(self.users, self.room_store, self.membership)
        self.upgrades = RoomUpgradeService(
            server_name=config.server_name, signing_key=self.signing_key, clock=self.clock,
            rooms=self.room_store, events=self.event_store, room_service=self.room_service,
            membership=self.membership,
        )
        self.visibility = VisibilityService(
            rooms=self.room_store, events=self.event_store, state=self.state_store,
            room_service=self.room_service,
        )
        self.relations = RelationsService(  # m.relates_to: /relations, /threads, bundled aggregations
            store=RelationStore(self.db), events=self.event_store, visibility=self.visibility, clock=self.clock,
        )
        self.event_persister.indexes.append(self.relations.index)  # kept in each event's write
        self.metrics.caches["related_targets"] = self.relations.targets.stats
        self.directory_rights = DirectoryRights(self.users, self.room_store, self.room_service)
        self.aliases = AliasService(
            local=self.local_server,
            rights=self.directory_rights,
            room_store=self.room_store,
            room_service=self.room_service,
            visibility=self.visibility,
            clock=self.clock,
        )
        self.room_creator = RoomCreator(
            server_name=config.server_name, signing_key=self.signing_key, clock=self.clock,
            internal_by_default=config.rooms.internal_by_default, rooms=self.room_store,
            room_service=self.room_service, membership=self.membership, aliases=self.aliases,
        )
        self.partners.connect(
            client=self.federation_client, drop_destination=self.federation_sender.drop_destination,
            notices=ServerNotices(
                store=self.partners.store, server_name=config.server_name, clock=self.clock,
                users=self.users, rooms=self.room_store, room_service=self.room_service,
                membership=self.membership, room_creator=self.room_creator,
            ),
        )
        self.typing = TypingService(self.clock)
        self.room_service.listeners.append(self.typing.on_room_event)
        self.receipts = ReceiptService(
            store=ReceiptStore(self.db),
            events=self.event_store,
            visibility=self.visibility,
            account_data=self.account_data,
            clock=self.clock,
        )
        self.presence = PresenceService(
            store=PresenceStore(self.db),
            enabled=presence_enabled(config),
            server_name=config.server_name,
            clock=self.clock,
            rooms=self.room_store,
            local_members=self.room_service.joined_local_users,
        )
        self.room_service.listeners.append(self.presence.on_room_event)
        # Device-list changes (devices and their keys): /sync device_lists, /keys/changes.
        self.device_lists = DeviceLists(
            store=DeviceListStore(self.db), audience=self.presence.audience,
            joined_local_users=self.room_service.joined_local_users,
        )
        self.room_service.listeners.append(self.device_lists.on_room_event)  # memberships, encryption
        self.login.device_listeners.append(self.device_lists.mark_changed)  # a device created
        # Other servers' users' keys: asked of their servers, device lists cached while shared.
        self.remote_keys = RemoteKeys(
            store=RemoteDeviceListStore(self.db), client=self.federation_client, server_name=config.server_name,
            audience=self.presence.audience, room_members=self._joined_members, changes=self.device_lists,
        )
        self.room_service.listeners.append(self.remote_keys.on_room_event)  # drop lists no longer shared
        self.announced_devices = AnnouncedDeviceStore(self.db)  # what other servers were told
        self.keys = KeysService(
            store=E2eeKeyStore(self.db), devices=self.devices, local_server=self.local_server,
            device_lists=self.device_lists, remote=self.remote_keys, announced=self.announced_devices,
        )
        self.auth.on_devices_deleted.append(self.device_lists.mark_changed)  # keys went with the devices
        self.auth.on_devices_deleted.append(self.keys.devices_deleted)  # their cached key counts too
        self.metrics.caches["device_key_counts"] = self.keys.cache_stats
        self.cross_signing = CrossSigningService(
            store=self.keys.store, local_server=self.local_server, device_lists=self.device_lists,
        )
        self.to_device = ToDeviceService(  # /sendToDevice, /sync to_device, m.direct_to_device both ways
            store=ToDeviceStore(self.db), devices=self.devices, is_mine=self.local_server.is_mine, clock=self.clock,
            outbox=self.federation_sender, allow_destination=self.federation_policy.allow_destination,
        )
        self.auth.on_devices_deleted.append(self.to_device.devices_deleted)  # their inboxes go
        self.filters = FilterService(FilterStore(self.db))
        self.push_rules = PushRulesService(PushRuleStore(self.db), self.account_data, self.notifier)
        # Push actions: each live event's, per local member it notifies, stored in its
        # write; unread counts and GET /notifications read them.
        self.push_actions = PushActionsIndex(
            store=PushActionStore(self.db), push_rules=self.push_rules, account_data=self.account_data,
            is_mine=self.local_server.is_mine, clock=self.clock,
        )
        self.event_persister.indexes.append(self.push_actions)
        self.event_persister.state_listeners.append(self.push_actions.state_changed)
        # Busy rooms' new notifications, read once for all their readers' unread counts.
        unread_tallies = RoomTallies(self.push_actions.store, self.recent_events)
        self.metrics.caches["unread_room_tallies"] = unread_tallies.stats
        self.unread = UnreadCounter(receipts=self.receipts, store=self.push_actions.store, tallies=unread_tallies)
        self.push_actions.on_removed.append(self.unread.rows_removed)
        self.push_actions.on_written.append(unread_tallies.told)
        # Pushers and delivery to their push gateways: queued in each event's write,
        # sent per pusher through the outbound guard, badge updates after receipts.
        pusher_store = PusherStore(self.db)
        # E-mail (off unless configured): addresses on accounts, e-mail pushers.
        threepid_store = ThreepidStore(self.db)
        self.mailer: Mailer | None = None
        if config.email.enabled:  # their modules are imported only then
            from homeserver.email.mailer import Mailer

            template_dir = config.email.template_dir
            ca_file = config.email.smtp_ca_file
            self.mailer = Mailer(config.email, config.resolve_path(template_dir) if template_dir else None,
                                 config.resolve_path(ca_file) if ca_file else None)

        async def email_owner(address: str) -> str | None:
            return await threepid_store.user_for(EMAIL, address)

        self.pushers = PusherService(
            store=pusher_store, address_refusal=self.outbound_guard.policy.refusal,
            max_per_user=config.push.max_pushers_per_user, now_ms=self.clock.time_ms,
            email_owner=email_owner if self.mailer is not None else None,
        )
        self.threepids = ThreepidService(
            store=threepid_store, mailer=self.mailer, config=config.email, clock=self.clock,
            rate_limit=self.ratelimiter.check, address_removed=self.pushers.address_removed,
        )
        self.uia.connect(email_identity=self.threepids.identity_of)  # the e-mail stage (password reset)
        self.auth.on_devices_deleted.append(self.pushers.devices_deleted)  # their pushers went with them
        self.push_delivery = PushDelivery(
            config=config.push, store=pusher_store, actions=self.push_actions.store, events=self.event_store,
            rooms=self.room_store, room_service=self.room_service, receipts=self.receipts, unread=self.unread,
            memberships=self.membership_queries.memberships_for_user,
            joined_rooms=self.membership_queries.joined_rooms_of, guard=self.outbound_guard,
            ssl_context=self._web_ssl_context(), clock=self.clock,
        )
        self.pushers.listeners.append(self.push_delivery)
        self.push_actions.connect(self.push_delivery)  # built after the writer's index
        self.room_activity.listeners.append(self.push_delivery.event_persisted)
        self.receipts.on_change.append(self.push_delivery.receipt_moved)
        self.email_notifier: EmailNotifier | None = None
        if self.mailer is not None:
            from homeserver.email.notifier import EmailNotifier

            self.email_notifier = EmailNotifier(
                config=config.email, mailer=self.mailer, pushers=pusher_store, actions=self.push_actions.store,
                events=self.event_store, rooms=self.room_store, room_service=self.room_service,
                receipts=self.receipts, clock=self.clock, secret=self.signing_key.encode(),
                account_data=self.account_data.store, addresses=threepid_store,
                unread_rooms=self.push_delivery.unread_by_room,
            )
            self.threepids.language_of = self.email_notifier.chosen_language
        # The /sync stream providers, built once: /sync and sliding sync both ask them.
        room_events_stream = RoomEventsStream(
            room_service=self.room_service,
            room_store=self.room_store,
            event_store=self.event_store,
            event_positions=self.event_positions,
            visibility=self.visibility,
            unread=self.unread,
            clock=self.clock,
            bundler=self.relations,
            recent=self.recent_events,
        )
        self.account_data.listeners.append(room_events_stream.ignored_users.account_data_changed)
        if room_events_stream.shared is not None:
            self.metrics.caches["sync_shared_timelines"] = room_events_stream.shared.stats
        if room_events_stream.initial_sections is not None:
            self.metrics.caches["sync_initial_sections"] = room_events_stream.initial_sections.stats
        typing_stream = TypingStream(self.typing, self.notifier, self.room_service.joined_local_users)
        receipts_stream = ReceiptsStream(self.receipts, self.notifier, self.room_service.joined_local_users)
        account_data_stream = AccountDataStream(self.account_data, self.push_rules, self.notifier)
        to_device_stream = ToDeviceStream(self.to_device, self.notifier)
        device_lists_stream = DeviceListsStream(self.device_lists, self.notifier)
        key_counts = E2eeKeyCounts(self.keys)
        self.sync = SyncService(
            streams=[
                room_events_stream,
                typing_stream,
                receipts_stream,
                account_data_stream,
                PresenceStream(self.presence, self.notifier),
                to_device_stream,
                device_lists_stream,
            ],
            membership_queries=self.membership_queries,
            notifier=self.notifier,
            clock=self.clock,
            joined_throughout=room_events_stream.joined_throughout,
            every_response=[key_counts],
        )
        self._sliding_sync_parts: dict[str, Any] = dict(  # MSC4186, over the same providers
            sync=self.sync, room_events=room_events_stream, typing=typing_stream, receipts=receipts_stream,
            account_data_stream=account_data_stream, to_device=to_device_stream,
            device_lists=device_lists_stream, key_counts=key_counts, room_service=self.room_service,
            room_store=self.room_store, event_store=self.event_store, event_positions=self.event_positions,
            account_data=self.account_data, receipts_changed=self.receipts.rooms_changed_since,
            unread=self.unread, notifier=self.notifier, clock=self.clock,
        )
        self.room_service.listeners.append(self.sync.on_room_event)
        self.room_activity.membership_listeners.append(self.sync.invalidate_memberships)
        self.user_directory = UserDirectory(  # POST /user_directory/search; its index follows room events
            store=UserDirectoryStore(self.db), room_service=self.room_service, is_mine=self.local_server.is_mine,
            search_all_local_users=config.user_directory.search_all_local_users,
        )
        self.room_service.listeners.append(self.user_directory.on_room_event)
        # Federation: the room gate, what other servers may read, what they send us,
        # the state and history we ask them for, joins and invites through them.
        self.server_gate = ServerGate(
            rooms=self.room_store, events=self.event_store, state=self.state_store,
            current=self.room_service, world_readable=self.visibility.is_world_readable,
        )
        self.federation_reads = FederationReads(
            gate=self.server_gate, rooms=self.room_store, events=self.event_store,
            room_service=self.room_service,
        )
        self.state_fetcher = StateFetcher(
            client=self.federation_client, checks=self.pdu_checks, received=self.received_events,
            events=self.event_store, room_service=self.room_service,
        )
        self.inbound_transactions = InboundTransactions(
            client=self.federation_client, gate=self.server_gate, checks=self.pdu_checks,
            received=self.received_events, state_fetcher=self.state_fetcher, rooms=self.room_store,
            events=self.event_store, room_service=self.room_service, edus=self.edus,
        )
        self.room_backfill = RoomBackfill(
            client=self.federation_client, checks=self.pdu_checks, received=self.received_events,
            events=self.event_store, store=BackfillStore(self.db), room_service=self.room_service,
            room_servers=self.room_servers, state_fetcher=self.state_fetcher, clock=self.clock,
        )
        self.federated_invites = FederatedInvites(
            server_name=config.server_name, signing_key=self.signing_key, client=self.federation_client,
            keyring=self.keyring, checks=self.pdu_checks, received=self.received_events,
            rooms=self.room_store, room_service=self.room_service, membership=self.membership,
            users=self.users, account_data=self.account_data, clock=self.clock,
        )
        self.federated_joins = FederatedJoins(
            server_name=config.server_name, signing_key=self.signing_key,
            federation_enabled=config.federation.enabled, client=self.federation_client,
            gate=self.server_gate, checks=self.pdu_checks, received=self.received_events,
            rooms=self.room_store, events=self.event_store, room_service=self.room_service,
            room_servers=self.room_servers, resolver=self.state_resolver, membership=self.membership,
            stripped=self.federated_invites, clock=self.clock,
        )
        self.federated_joins.on_joined.append(self.room_backfill.prefetch)
        # Joins serve knocks with the invites' stripped state; invites reject through joins.
        self.federated_invites.connect(joins=self.federated_joins)
        self.remote_profiles = RemoteProfiles(  # other servers' users, cached briefly
            server_name=config.server_name, client=self.federation_client, monotonic=self.clock.monotonic,
        )
        self.room_history = RoomHistory(  # clients' reads of timelines and state, backfilling
            room_service=self.room_service, events=self.event_store, state=self.state_store,
            backfill=self.room_backfill, clock=self.clock, bundler=self.relations,
        )
        self.legacy_events = LegacyEventStream(  # GET /events (deprecated), peeks included
            rooms=self.room_service, access=self.visibility, history=self.room_history, notifier=self.notifier,
            clock=self.clock, current_position=lambda: self.room_service.stream.current,
        )
        self.room_service.listeners.append(self.legacy_events.on_room_event)  # wakes peekers
        search_store = SearchStore(self.db)
        self.event_persister.indexes.append(SearchIndex(search_store))  # full text, kept in each event's write
        self.event_persister.indexes.append(self.analytics)  # messages per day, in each event's write
        self._search_parts: dict[str, Any] = dict(  # POST /search, see `search`
            store=search_store, events=self.event_store, rooms=self.room_store, room_service=self.room_service,
            visibility=self.visibility, history=self.room_history,
        )
        self.user_admin = UserAdmin(
            store=AdminUserStore(self.db), users=self.users, devices=self.devices, auth=self.auth,
            accounts=self.accounts, passwords=self.passwords, ratelimiter=self.ratelimiter,
            exempt_users=config.rate_limits.exempt_users, clock=self.clock,
        )
        self.registration_token_admin = RegistrationTokenAdmin(self.registration_tokens, self.clock)
        self.room_admin = RoomAdmin(
            store=AdminRoomStore(self.db, config.server_name), clock=self.clock, rooms=self.room_store,
            events=self.event_store, state=self.state_store, room_service=self.room_service,
            room_servers=self.room_servers, membership=self.membership, room_creator=self.room_creator,
            sync=self.sync, unread=self.unread, receipts=self.receipts, account_data=self.account_data,
            typing=self.typing,
        )
        # Joins, invites and the room admin use membership and membership uses them.
        self.membership.connect(
            joins=self.federated_joins, invites=self.federated_invites, blocks=self.room_admin,
            forgotten=self.sync.invalidate_memberships,
        )
        self.public_rooms = PublicRoomsService(
            rights=self.directory_rights,
            room_store=self.room_store,
            room_service=self.room_service,
            federation_client=self.federation_client,
            clock=self.clock,
        )
        acl_allows = self.server_gate.acl_allows
        is_mine = self.local_server.is_mine
        for edu in (
            TypingEdu(
                typing=self.typing, rooms=self.room_store, acl_allows=acl_allows,
                servers_in_room=self.room_servers.servers_in_room, is_mine=is_mine,
            ),
            ReceiptEdu(
                receipts=self.receipts, rooms=self.room_store, events=self.event_store, acl_allows=acl_allows,
                servers_in_room=self.room_servers.servers_in_room, is_mine=is_mine,
            ),
            PresenceEdu(
                presence=self.presence, rooms=self.room_store,
                servers_in_room=self.room_servers.servers_in_room, is_mine=is_mine,
            ),
            *(
                announcer(
                    device_lists=self.device_lists, keys=self.keys, announced=self.announced_devices,
                    remote=self.remote_keys, rooms=self.room_store, servers_in_room=self.room_servers.servers_in_room,
                )
                for announcer in (DeviceListUpdateEdu, SigningKeyUpdateEdu)
            ),
            DirectToDeviceEdu(to_device=self.to_device),
        ):
            self.edus.register(edu)
        # The shared partner directory: the one we serve, our profile in others, searching them.
        self.partner_directory = PartnerDirectory(
            config=config.partner_directory, store=PartnerDirectoryStore(self.db), clock=self.clock,
            audit=self.audit,
        )
        self.partner_directory_publisher = DirectoryPublisher(
            config=config.partner_directory, organization=config.organization,
            federation=config.federation, server_name=config.server_name,
            publications=PublicationStore(self.db), directory=self.partner_directory,
            client=self.federation_client, active_partners=self.partners.active_partners,
            clock=self.clock,
        )
        # Our profile as admins edit it (seeded from the config): the publisher publishes
        # it and the partnerships introduce us by its name.
        self.organization = OrganizationProfile(
            store=OrganizationStore(self.db), seed=config.organization, clock=self.clock, audit=self.audit,
        )
        self.organization.listeners += [self.partner_directory_publisher.set_organization, self.partners.set_organization]
        # The media repository is built at its first use (`media`); purges and erasures
        # reach it through these, building it if they come first.
        self.room_admin.before_purge.append(lambda room_id: self.media.purge_room_media(room_id))
        self.user_admin.on_erase.append(lambda user_id: self.media.delete_user_media(user_id))
        self._media_upkeep: asyncio.Task[None] | None = None  # started with the server
        self._runners: list[web.AppRunner] = []
        self.bound: list[tuple[ListenerConfig, str, int]] = []

    # Services most servers seldom or never use, built at their first request: their
    # modules then stay unimported (about 0.3 MB each resident), and they hold nothing
    # that must be kept up to date meanwhile (what they read, the search index included,
    # is written by the services built above).
    @cached_property
    def sliding_sync(self) -> SlidingSyncService:
        """Simplified sliding sync (MSC4186), over /sync's stream providers."""
        from homeserver.sync.sliding.service import SlidingSyncService

        return SlidingSyncService(**self._sliding_sync_parts)

    @cached_property
    def search(self) -> SearchService:
        """POST /search over the rooms a user is or was in."""
        from homeserver.search.service import SearchService

        return SearchService(**self._search_parts)

    @cached_property
    def reports(self) -> ReportService:
        """Event, room and user reports, and the admin API's reading of them."""
        from homeserver.reports import ReportService
        from homeserver.storage.event_reports import EventReportStore

        return ReportService(
            store=EventReportStore(self.db), rooms=self.room_store, events=self.event_store,
            room_service=self.room_service, visibility=self.visibility, audit=self.audit,
            clock=self.clock, users=self.users, server_name=self.config.server_name,
        )

    @cached_property
    def key_backup(self) -> KeyBackupService:
        """Server-side room key backups (/room_keys)."""
        from homeserver.e2ee.key_backup import KeyBackupService
        from homeserver.storage.key_backup import KeyBackupStore

        return KeyBackupService(store=KeyBackupStore(self.db))

    @cached_property
    def timestamp_lookup(self) -> TimestampLookup:
        """/timestamp_to_event, ours and other servers'."""
        from homeserver.federation.timestamps import TimestampLookup

        return TimestampLookup(
            client=self.federation_client, gate=self.server_gate, events=self.event_store,
            room_service=self.room_service, room_servers=self.room_servers, state_fetcher=self.state_fetcher,
            backfill=self.room_backfill,
        )

    @cached_property
    def notification_inbox(self) -> NotificationInbox:
        """GET /notifications over the stored push actions."""
        from homeserver.push.inbox import NotificationInbox

        return NotificationInbox(
            store=self.push_actions.store, rooms=self.room_store, events=self.event_store,
            history=self.room_history, receipts=self.receipts,
        )

    @cached_property
    def space_hierarchy(self) -> SpaceHierarchy:
        """Spaces: local rooms, and via servers' answers, cached briefly once asked."""
        from homeserver.rooms.hierarchy import SpaceHierarchy

        return SpaceHierarchy(
            server_name=self.config.server_name, rooms=self.room_store, room_service=self.room_service,
            gate=self.server_gate, client=self.federation_client, clock=self.clock,
        )

    @cached_property
    def room_summaries(self) -> RoomSummaries:
        """Room previews: the hierarchy's summaries, for who may see them."""
        from homeserver.rooms.summary import RoomSummaries

        return RoomSummaries(
            room_service=self.room_service, aliases=self.aliases, source=self.space_hierarchy,
            servers=self.membership,
        )

    @cached_property
    def mutual_rooms(self) -> MutualRooms:
        """The rooms two users share (MSC2666)."""
        from homeserver.rooms.mutual_rooms import MutualRooms

        return MutualRooms(room_service=self.room_service, clock=self.clock)

    @cached_property
    def partner_directory_search(self) -> DirectorySearch:
        """Our users' searches of the partner directories we follow."""
        from homeserver.partners.directory_search import DirectorySearch

        return DirectorySearch(
            config=self.config.partner_directory, server_name=self.config.server_name,
            directory=self.partner_directory, client=self.federation_client,
        )

    @cached_property
    def _media(self) -> tuple[MediaRepository, FederatedRemoteMedia, UrlFetcher]:
        """The media repository (files under <data_dir>/media, metadata in the database),
        other servers' media fetched over federation into its cache, and the plain
        fetcher of URLs others chose (a remote media Location, URL previews) through the
        outbound guard: built together at the first media request, purge, erasure or
        cleanup (`_media_upkeep`). Their modules are some 0.3 MB resident that a server
        whose users send no files never needed."""
        from homeserver.media.fetch import UrlFetcher
        from homeserver.media.remote import FederatedRemoteMedia
        from homeserver.media.repository import MediaRepository
        from homeserver.media.storage_provider import LocalFilesystemProvider
        from homeserver.storage.media import MediaStore

        media = MediaRepository(
            server_name=self.config.server_name, store=MediaStore(self.db),
            storage=LocalFilesystemProvider(self.config.resolve_path("media")),
            config=self.config.media, clock=self.clock,
        )
        fetcher = UrlFetcher(self.outbound_guard, self._web_ssl_context())
        remote = FederatedRemoteMedia(
            repository=media, client=self.federation_client, fetcher=fetcher,
            server_allowed=self.federation_policy.server_allowed,
        )
        media.set_remote(remote)
        return media, remote, fetcher

    @property
    def media(self) -> MediaRepository:
        return self._media[0]

    @property
    def remote_media(self) -> FederatedRemoteMedia:
        return self._media[1]

    @cached_property
    def url_previewer(self) -> UrlPreviewer | None:
        """GET /preview_url (None: previews are off; their HTML parser is never imported)."""
        cfg = self.config.media.url_preview
        if not cfg.enabled:
            return None
        from homeserver.media.preview import PreviewSettings, UrlPreviewer

        settings = PreviewSettings(
            max_page_bytes=cfg.max_page_bytes, max_image_bytes=cfg.max_image_bytes,
            timeout_s=cfg.timeout_s, max_redirects=cfg.max_redirects,
            cache_ttl_ms=cfg.cache_ttl_s * 1000, cache_entries=cfg.cache_entries,
        )
        return UrlPreviewer(
            settings=settings, fetcher=self._media[2], store_image=self.media.upload,
            now_ms=self.clock.time_ms,
        )

    async def _flush_media_accesses(self) -> None:
        """Recorded downloads, written in batches; a repository never built has none."""
        if "_media" in self.__dict__:
            await self.media.flush_accesses()

    async def _joined_members(self, room: RoomRecord) -> list[str]:
        """The user IDs joined to a room (local and remote)."""
        return [user_id for user_id, _, _ in await self.room_store.members(room.room_nid, "join")]

    async def _ignored_users(self, user_id: str) -> set[str]:
        """Users whose events this user has chosen not to see (m.ignored_user_list)."""
        content = await self.account_data.get_global(user_id, "m.ignored_user_list")
        ignored = content.get("ignored_users", {}) if isinstance(content, dict) else {}
        return set(ignored) if isinstance(ignored, dict) else set()

    def _web_ssl_context(self) -> TlsTrust:
        """TLS trust for plain HTTPS fetches: the system's, plus the federation CA
        bundle (a partner's private PKI may serve its media Locations too).

        One for every outbound client that verifies (push gateways, media Locations,
        URL previews, and federation unless verification is off): each context holds
        its own parsed copy of the system's CA certificates, about 0.8 MB; without a
        bundle it is aiohttp's own (`SYSTEM_TRUST`), so none is built."""
        if self._verifying_ssl_context is None:
            bundle = self.config.federation.ca_bundle_path
            self._verifying_ssl_context = make_ssl_context(
                ca_bundle_path=self.config.resolve_path(bundle) if bundle else None
            )
        return self._verifying_ssl_context

    def _make_federation_client(self) -> FederationClient | None:
        """The outbound client (None when federation is off): TLS trust, static
        hosts and signing key from the config; nothing connects until used."""
        fed = self.config.federation
        if not fed.enabled:
            return None
        ssl_ctx = self._web_ssl_context() if fed.verify_certificates else make_ssl_context(
            verify=False,
            ca_bundle_path=self.config.resolve_path(fed.ca_bundle_path) if fed.ca_bundle_path else None,
        )
        resolver = ServerResolver(
            ssl_context=ssl_ctx, static_hosts=fed.static_hosts, guard=self.outbound_guard
        )
        return FederationClient(
            self.config.server_name, self.signing_key, resolver=resolver, ssl_context=ssl_ctx,
            policy=self.federation_policy.allow_outbound, guard=self.outbound_guard,
        )

    async def start(self) -> None:
        await self.db.open()
        try:
            await migrate(self.db)
            for user_id in await self.users.list_ratelimit_exempt():
                self.ratelimiter.set_exempt(user_id, True)
            await self.user_admin.start()
            await self.relations.start()  # before any event is written
            await self.room_service.start()
            await self.partners.start()  # the active partners, before anything federates
            await self.federation_sender.start()
            await self.analytics.start(len(await self.partners.active_partners()))
            await self.partner_directory.start()
            await self.organization.start()  # before the publisher publishes it
            await self.partner_directory_publisher.start()  # needs partners for publish_partners
            # The periodic cleanup of expired and old media, from now, built or not.
            self._media_upkeep = asyncio.create_task(run_upkeep(
                self.config.media.cleanup_interval_s, self._flush_media_accesses,
                lambda: self.media.cleanup_once(),
            ))
            await self.push_delivery.start()  # resumes queues left from before a restart
            if self.email_notifier is not None:
                self.email_notifier.start()  # mails what is still unread after the delay
            self.user_directory.start()  # fills its index from existing rooms, once
        except BaseException:
            # An open engine keeps non-daemon threads alive: close it or the process hangs.
            await self.db.close()
            raise

    async def stop(self) -> None:
        self.notifier.close()  # long-polling /sync requests answer now, not at their timeout
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.partners.stop()  # deliveries to peers still retrying
        await self.partner_directory_publisher.stop()  # publishes in flight use the client
        await self.partner_directory.stop()
        await self.federation_sender.stop()  # before the client and the database close
        await self.room_backfill.stop()  # history fetched after joins
        await self.push_delivery.stop()  # gateway requests in flight; their queue rows stay
        if self.email_notifier is not None:
            await self.email_notifier.stop()
        await self.analytics.stop()  # the federation figures gathered since the last flush
        if self.federation_client is not None:
            await self.federation_client.close()
        await self.presence.flush()  # batched presence writes, before the database closes
        await self.auth.flush_seen()  # devices' last use
        await cancel_and_wait(self._media_upkeep)
        self._media_upkeep = None
        if "_media" in self.__dict__:  # built by a request, a purge or a cleanup
            await self.media.stop()  # thumbnailing in flight, recorded accesses
            await self._media[2].close()
        await self.federation_policy.flush()  # refusal audit records
        await self.user_directory.settle()  # index updates under way
        await self.remote_keys.drain()  # device lists being dropped
        await self.db.close()

    def is_ratelimit_exempt(self, user_id: str) -> bool:
        return self.ratelimiter.exempt(user_id)

    async def set_ratelimit_exempt(self, user_id: str, exempt: bool) -> None:
        """Exempt a user (a bot) from rate limits, durably and at once."""
        await self.users.set_ratelimit_exempt(user_id, exempt)
        self.ratelimiter.set_exempt(user_id, exempt or user_id in self.config.rate_limits.exempt_users)

    def build_app(self, resources: list[str], *, x_forwarded: bool = False) -> web.Application:
        """One aiohttp application serving the given APIs."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[HS_KEY] = self
        app[X_FORWARDED_KEY] = x_forwarded
        registrars: dict[str, Callable[[web.Application], None]] = {}
        from homeserver.api import admin, client, federation, metrics, wellknown

        registrars["client"] = client.register_routes
        from homeserver.api.client import media

        registrars["media"] = media.register_routes  # the client listener serves them too
        registrars["admin"] = admin.register_routes
        registrars["metrics"] = metrics.register_routes
        if self.config.federation.enabled:
            registrars["federation"] = federation.register_federation_routes
            registrars["keys"] = federation.register_key_routes
        for r in resources:
            if r in registrars:
                registrars[r](app)
            else:
                logger.warning(
                    "listener resource %r is configured but nothing is served for it: %s;"
                    " remove it from the listener's resources",
                    r, UNSERVED_RESOURCES.get(r, "federation.enabled is false"),
                )
        if "client" in resources:
            wellknown.register_routes(app)
            from homeserver.api import console

            console.register_routes(app)  # the organization console's files
        serve_matrix(app)  # JSON errors, CORS and metrics for every route above
        return app

    async def start_listeners(self) -> None:
        from homeserver.api.read_buffers import bound_read_buffers

        bound_read_buffers()  # a refused request's unread body must not fill our memory
        for lst in self.config.listeners:
            app = self.build_app(lst.resources, x_forwarded=lst.x_forwarded)
            # Matrix JSON errors even for requests aiohttp's parser refuses (overlong URIs).
            from homeserver.api.protocol import MatrixAppRunner

            runner = MatrixAppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            self._runners.append(runner)
            ssl_ctx = None
            if lst.tls:
                # No client certificates are asked for, so no CA certificates are loaded
                # (create_default_context(CLIENT_AUTH) would parse the system's, ~0.75 MB).
                ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                assert lst.tls_certificate_path and lst.tls_private_key_path
                ssl_ctx.load_cert_chain(
                    self.config.resolve_path(lst.tls_certificate_path),
                    self.config.resolve_path(lst.tls_private_key_path),
                )
            for addr in lst.bind_addresses:
                site = web.TCPSite(
                    runner, addr, lst.port, ssl_context=ssl_ctx, reuse_address=True, backlog=1024
                )
                await site.start()
                sockets = getattr(site._server, "sockets", None)  # an asyncio.Server's
                port = lst.port
                if sockets:  # port 0: learn the real one
                    port = sockets[0].getsockname()[1]
                self.bound.append((lst, addr, port))
                scheme = "https" if lst.tls else "http"
                logger.info(
                    "listening on %s://%s:%d for %s", scheme, addr, port, ", ".join(lst.resources)
                )
        # Only now can other servers fetch our keys: the directories we publish to may be told.
        self.partner_directory_publisher.reachable()
