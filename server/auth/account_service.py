"""The account owner's own actions: register, verify email, reset or change the password,
read and edit the profile, delete the account."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Coroutine
from typing import Any

from structlog.typing import FilteringBoundLogger

from server.audit.repository import AuditRepository
from server.auth import mails
from server.auth.password_policy import password_problems
from server.auth.passwords import PasswordHasher
from server.auth.principal import Principal
from server.auth.repository import OneTimeTokens
from server.auth.revoker import Revoker
from server.auth.setup import AccountMailBudget
from server.auth.throttle import ACCOUNT_POLICY, LoginThrottle, account_key
from server.db.database import Connection, Database
from server.db.mail_outbox import MailOutbox
from server.runtime import background
from server.users.email_address import account_email
from server.users.repository import EmailTaken, NewUser, User, UsersRepository
from server.web.context import RequestContext
from server.web.errors import BadRequest, NotFound, ValidationFailed

VERIFY_TTL = dt.timedelta(hours=48)
RESET_TTL = dt.timedelta(minutes=30)
NOTICE_TTL = dt.timedelta(days=1)  # how long a mail with no token is worth sending


class InvalidOneTimeToken(BadRequest):
    slug = "invalid-one-time-token"
    title = "Invalid or expired token"


class WrongPassword(BadRequest):
    slug = "wrong-password"
    title = "The current password is wrong"


def check_password(password: str, email: str, pointer: str = "/password") -> None:
    problems = password_problems(password, email=email)
    if problems:
        raise ValidationFailed(
            "The password does not meet the policy.",
            errors=[{"pointer": pointer, "detail": problem} for problem in problems],
        )


class AccountService:
    def __init__(
        self,
        db: Database,
        *,
        users: UsersRepository,
        tokens: OneTimeTokens,
        throttle: LoginThrottle,
        audit: AuditRepository,
        revoker: Revoker,
        passwords: PasswordHasher,
        mail: MailOutbox,
        public_url: str,
        logger: FilteringBoundLogger,
        mail_budget: AccountMailBudget | None = None,
    ) -> None:
        self.db = db
        self.users = users
        self.tokens = tokens
        self.throttle = throttle
        self.audit = audit
        self.revoker = revoker
        self.passwords = passwords
        # Mails are written to the outbox in the transaction that causes them; the worker
        # sends them (server/runtime/mail_worker.py), so no request waits on SMTP.
        self.mail = mail
        self.public_url = public_url
        self.logger = logger
        self.mail_budget = mail_budget
        self._background: set[asyncio.Task[None]] = set()

    def _later(self, job: Coroutine[Any, Any, None]) -> None:
        """Work whose duration must not show in the response time (it would reveal accounts)."""
        task = background.spawn_detached(self._guarded(job))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _guarded(self, job: Coroutine[Any, Any, None]) -> None:
        try:
            await job
        except Exception as exc:
            self.logger.error("account_background_failed", error=type(exc).__name__)

    async def drain(self) -> None:
        """Wait for background work (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def register(
        self, email: str, password: str, display_name: str, ctx: RequestContext
    ) -> None:
        """Same answer and the same work whether or not the email is taken. The account is
        made for the normalised address and is pending (no login) until that mailbox confirms
        it: whoever registers a spelling of someone else's address cannot use the account."""
        email = account_email(email)
        check_password(password, email)
        digest = await self.passwords.hash(password)
        try:
            async with self.db.transaction() as conn:
                new = NewUser(email, digest, display_name, status="pending")
                user = await self.users.create(conn, new)
                token = await self.tokens.issue(conn, user.id, "email_verify", _now() + VERIFY_TTL)
                await self._record(conn, "auth.register", "success", ctx, user.id, user.id)
                await self._verification_mail(conn, user.email, token)
        except EmailTaken:
            self._later(self._notify_taken(email, ctx))

    async def _notify_taken(self, email: str, ctx: RequestContext) -> None:
        if not await self._mail_allowed(email):
            # The caller got the same answer either way; the inbox is spared.
            self.logger.info("register_notice_suppressed", reason="account_budget_spent")
            return
        claim = None
        async with self.db.transaction() as conn:
            found = await self.users.credentials(conn, email)
            if found is None:  # deleted since
                return
            user = found.user
            if user.status == "pending":
                # Whoever made it may not own this mailbox (a lookalike spelling of the address
                # is the address), and the link it was sent would confirm it with their
                # password: that link stops working, and the mailbox takes the account by
                # setting a password of its own, which confirms it.
                await self.tokens.retire(conn, user.id, "email_verify")
                claim = await self.tokens.issue(conn, user.id, "password_reset", _now() + RESET_TTL)
                await self._record(
                    conn, "auth.password_reset_requested", "success", ctx, None, user.id
                )
            await self.mail.add(
                conn,
                mails.register_notice(self.public_url, user.email, claim),
                "register_notice",
                keep_trying=NOTICE_TTL if claim is None else RESET_TTL,
            )

    async def _verification_mail(self, conn: Connection, email: str, token: str) -> None:
        message = mails.verification(self.public_url, email, token)
        await self.mail.add(conn, message, "email_verify", keep_trying=VERIFY_TTL)

    async def verify_email(self, token: str, ctx: RequestContext) -> None:
        async with self.db.transaction() as conn:
            user_id = await self.tokens.redeem(conn, token, "email_verify")
            if user_id is None:
                raise InvalidOneTimeToken("The verification token is invalid or expired.")
            await self.users.mark_email_verified(conn, user_id)
            await self._record(conn, "auth.email_verified", "success", ctx, user_id, user_id)

    async def resend_verification(self, principal: Principal) -> None:
        async with self.db.transaction() as conn:
            user = await self._user(conn, principal.user_id)
            if user.email_verified_at is not None:
                return
            token = await self.tokens.issue(conn, user.id, "email_verify", _now() + VERIFY_TTL)
            await self._verification_mail(conn, user.email, token)

    async def forgot_password(self, email: str, ctx: RequestContext) -> None:
        """Answers at once for any email; a known one gets a reset mail queued in the
        background (its time would tell the account exists)."""
        self._later(self._send_reset(account_email(email), ctx))

    async def _mail_allowed(self, email: str) -> bool:
        """Within the account's budget of mails that anyone can have sent to it: reset links and
        register notices spend the one budget (HOTPATH_RATE_LIMIT_ACCOUNT_MAIL)."""
        return self.mail_budget is None or await self.mail_budget.allows(email)

    async def _send_reset(self, email: str, ctx: RequestContext) -> None:
        if not await self._mail_allowed(email):
            # The caller got the same answer either way; the inbox is spared.
            self.logger.info("password_reset_mail_suppressed", reason="account_budget_spent")
            return
        async with self.db.transaction() as conn:
            found = await self.users.credentials(conn, email)
            # A pending account too: a reset is how its mailbox takes it.
            if found is None or found.user.status == "disabled":
                return
            user = found.user
            token = await self.tokens.issue(conn, user.id, "password_reset", _now() + RESET_TTL)
            await self._record(conn, "auth.password_reset_requested", "success", ctx, None, user.id)
            message = mails.password_reset(self.public_url, user.email, token)
            await self.mail.add(conn, message, "password_reset", keep_trying=RESET_TTL)

    async def reset_password(self, token: str, password: str, ctx: RequestContext) -> None:
        async with self.db.transaction() as conn:
            user_id = await self.tokens.redeem(conn, token, "password_reset")
            user = await self.users.get(conn, user_id) if user_id is not None else None
            if user is None or user.status == "disabled":
                raise InvalidOneTimeToken("The reset token is invalid or expired.")
            # A policy failure rolls the transaction back, so the token stays usable.
            check_password(password, user.email)
            await self.users.set_password(conn, user.id, await self.passwords.hash(password))
            # The token came through the mailbox: that confirms it, and a pending account is
            # now the mailbox owner's.
            await self.users.mark_email_verified(conn, user.id)
            revoked = await self.revoker.end_all_sessions(conn, user.id, "password_reset")
            # The emailed token proved the owner: failed logins by anyone else are forgotten.
            await self.throttle.forgive(conn, account_key(user.email))
            await self._record(conn, "auth.password_reset", "success", ctx, user.id, user.id)
        await self.revoker.announce(revoked)

    async def change_password(
        self, principal: Principal, current: str, new: str, ctx: RequestContext
    ) -> None:
        # The new password is judged first: a change that would be refused anyway spends
        # neither a guess at the current password (the login's backoff) nor an argon2 verify,
        # and the client learns what to fix in one round.
        async with self.db.connection() as conn:
            email = (await self._user(conn, principal.user_id)).email
        check_password(new, email, "/new_password")
        user, ok = await self._confirm_password(principal.user_id, current)
        if not ok:
            async with self.db.transaction() as conn:
                await self._record(conn, "auth.password_change", "failure", ctx, user.id, user.id)
            raise WrongPassword("The current password is wrong.")
        digest = await self.passwords.hash(new)
        keep = principal.session_id
        async with self.db.transaction() as conn:
            await self.users.set_password(conn, user.id, digest)
            revoked = await self.revoker.end_all_sessions(
                conn, user.id, "password_change", keep=_uuid(keep)
            )
            await self._record(conn, "auth.password_change", "success", ctx, user.id, user.id)
        await self.revoker.announce(revoked)

    async def profile(self, principal: Principal) -> User:
        async with self.db.connection() as conn:
            return await self._user(conn, principal.user_id)

    async def update_profile(self, principal: Principal, display_name: str) -> User:
        async with self.db.transaction() as conn:
            await self._user(conn, principal.user_id)
            return await self.users.update_profile(conn, principal.user_id, display_name)

    async def delete_account(
        self, principal: Principal, password: str, ctx: RequestContext
    ) -> None:
        user, ok = await self._confirm_password(principal.user_id, password)
        if not ok:
            async with self.db.transaction() as conn:
                await self._record(conn, "user.deleted", "failure", ctx, user.id, user.id)
            raise WrongPassword("The password is wrong.")
        async with self.db.transaction() as conn:
            revoked = await self.revoker.end_all_sessions(conn, principal.user_id, "deleted")
            await self._record(
                conn, "user.deleted", "success", ctx, principal.user_id, principal.user_id
            )
            await self.users.delete(conn, principal.user_id)
        await self.revoker.announce(revoked)

    async def _confirm_password(self, user_id: int, password: str) -> tuple[User, bool]:
        """Checks the account's password under the login's per-account backoff: whoever holds a
        session (perhaps a stolen one) gets no more guesses at it than a login would, and a
        block earned either way holds for both. Raises LoginThrottled (429) while blocked."""
        async with self.db.connection() as conn:
            user = await self._user(conn, user_id)
            stored = await self.users.password_hash(conn, user.id)
        account = account_key(user.email)
        async with self.db.transaction() as conn:
            # Counted as a failure and committed before the check, as at login: a burst of
            # concurrent guesses cannot all get through.
            await self.throttle.attempt(conn, [(account, ACCOUNT_POLICY)], _now())
        if stored is None or not (await self.passwords.verify(stored, password)).ok:
            return user, False
        async with self.db.transaction() as conn:
            await self.throttle.forgive(conn, account)
        return user, True

    async def _user(self, conn: Connection, user_id: int) -> User:
        user = await self.users.get(conn, user_id)
        if user is None:
            raise NotFound("No such user.")
        return user

    async def _record(
        self,
        conn: Connection,
        action: str,
        outcome: str,
        ctx: RequestContext,
        actor_id: int | None,
        user_id: int,
    ) -> None:
        await self.audit.record(
            conn,
            ctx,
            action,
            outcome=outcome,
            actor_id=actor_id,
            target_type="user",
            target_id=str(user_id),
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None
