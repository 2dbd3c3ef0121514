from .models.freshbooks_account import PARAM_PREFIX


def uninstall_hook(env):
    """Tell FreshBooks the connector is gone: its webhooks are removed and its grant revoked
    after the commit, best effort (an unreachable FreshBooks never stops the uninstall). The
    parameters set at run time go too; records from data files are removed by Odoo."""
    for account in env["freshbooks.account"].sudo().search([]):
        env["freshbooks.webhook"]._remove_all(account, revoke=True)
    env["ir.config_parameter"].sudo().search([("key", "=like", PARAM_PREFIX + "%")]).unlink()
