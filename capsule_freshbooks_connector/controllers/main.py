import logging
from urllib.parse import urlencode

from werkzeug.exceptions import BadRequest, Forbidden, NotFound

from odoo import http
from odoo.exceptions import AccessDenied, UserError
from odoo.http import request

from ..freshbooks import FreshBooksError, parse_webhook_body
from ..models.freshbooks_account import CALLBACK_PATH, WEBHOOK_PATH

_logger = logging.getLogger(__name__)

SETTINGS_URL = "/odoo/settings#freshbooks"
# A FreshBooks delivery is a handful of ids; anything bigger is not one.
MAX_WEBHOOK_BYTES = 8 * 1024
WEBHOOK_CRON = "capsule_freshbooks_connector.ir_cron_freshbooks_work"


class FreshbooksController(http.Controller):

    def _page(self, title, message, ok=False, businesses=None, account=None):
        choices = [dict(b, warning=account._switch_warning(b["account_id"]))
                   for b in businesses or []]
        return request.render("capsule_freshbooks_connector.oauth_result_page", {
            "title": title, "message": message, "ok": ok, "settings_url": SETTINGS_URL,
            "businesses": choices, "account": account})

    @http.route(CALLBACK_PATH, type="http", auth="user", methods=["GET"])
    def oauth_callback(self, state=None, code=None, error=None, error_description=None, **kw):
        """FreshBooks sends the admin back here after the consent page."""
        if not request.env.user.has_group("base.group_system"):
            return self._page(request.env._("Not allowed"), request.env._(
                "Only Settings administrators can connect FreshBooks."))
        Account = request.env["freshbooks.account"]
        try:
            account = Account._consume_state(state)
        except AccessDenied as exc:
            return self._page(request.env._("FreshBooks was not connected"), str(exc.args[0]))
        if error or not code:
            account.status_message = request.env._("FreshBooks sign-in was cancelled; nothing changed.")
            return self._page(request.env._("FreshBooks was not connected"), request.env._(
                "You did not allow Odoo to use your FreshBooks account (%s). The previous "
                "connection, if any, is unchanged.", error_description or error or request.env._("no code")))
        try:
            # The savepoint undoes a half-done exchange; the spent state stays spent.
            with request.env.cr.savepoint():
                account._finish_oauth(code)
        except (FreshBooksError, UserError) as exc:
            _logger.warning("FreshBooks code exchange failed: %s", exc)
            return self._page(request.env._("FreshBooks was not connected"), request.env._(
                "FreshBooks did not accept the sign-in: %s. The previous connection, if any, is "
                "unchanged. Try Connect again.", exc))
        if account.state == "choose":
            return self._page(request.env._("Choose your FreshBooks business"), request.env._(
                "Choose the FreshBooks business of %s.", account.company_id.name),
                businesses=account.business_choices, account=account)
        return request.redirect(SETTINGS_URL)

    @http.route("/freshbooks/oauth/business", type="http", auth="user", methods=["POST"])
    def oauth_business(self, account_id=None, fb_account_id=None, confirm=None, **kw):
        if not request.env.user.has_group("base.group_system"):
            raise Forbidden()
        account = request.env["freshbooks.account"].sudo().browse(int(account_id or 0)).exists()
        if not account or account.state != "choose" or \
                account.company_id not in request.env.user.company_ids:
            raise NotFound()
        try:
            account._set_business(fb_account_id, confirmed=bool(confirm))
        except UserError as exc:
            return self._page(request.env._("FreshBooks was not connected"), str(exc.args[0]),
                              businesses=account.business_choices, account=account)
        return request.redirect(SETTINGS_URL)

    @http.route(WEBHOOK_PATH, type="http", auth="public", methods=["POST"], csrf=False,
                save_session=False, max_content_length=MAX_WEBHOOK_BYTES)
    def webhook(self, **kw):
        """A FreshBooks webhook: checked, queued, answered at once; the cron does the work."""
        form = request.httprequest.form
        # Odoo has parsed the form already; the pairs keep the order they arrived in, which is
        # the order FreshBooks signed.
        raw_body = urlencode(list(form.items(multi=True))).encode()
        try:
            pairs = parse_webhook_body(raw_body)
        except ValueError:
            raise BadRequest() from None
        fields_ = dict(pairs)
        Webhook = request.env["freshbooks.webhook"].sudo()
        if "verifier" in fields_ and fields_.get("object_id"):
            # The handshake after we registered a callback: unsigned by design; the verifier is
            # only trusted once FreshBooks accepts it back.
            if Webhook._receive_verifier(fields_["object_id"], fields_["verifier"],
                                         fields_.get("account_id")):
                return request.make_response("ok")
            raise NotFound()
        name, object_id = fields_.get("name", ""), fields_.get("object_id", "")
        kind = name.split(".", 1)[0]
        if kind not in request.env["freshbooks.synced"]._fb_types() or not object_id.isdigit():
            raise BadRequest()
        signature = request.httprequest.headers.get("X-FreshBooks-Hmac-SHA256", "")
        account = Webhook._account_for_delivery(pairs, raw_body, signature)
        if not account:
            _logger.info("FreshBooks webhook refused: bad signature or unknown business")
            raise Forbidden()
        request.env["freshbooks.queue"].sudo()._enqueue(account, kind, object_id, "webhook")
        request.env.ref(WEBHOOK_CRON).sudo()._trigger()
        return request.make_response("ok")
