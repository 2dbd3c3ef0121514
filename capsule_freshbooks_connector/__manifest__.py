{
    "name": "FreshBooks Connector",
    "summary": "Keep Odoo contacts and FreshBooks clients in step, and see "
    "FreshBooks invoices on the contact form",
    "version": "18.0.1.0.0",
    "category": "Sales/Sales",
    "author": "Capsule",
    "website": "https://github.com/capsule/capsule_freshbooks_connector",
    "license": "LGPL-3",
    "depends": ["base_setup", "bus", "contacts", "sales_team", "mail"],
    "external_dependencies": {"python": ["requests", "oauthlib"]},
    "data": [
        "security/freshbooks_security.xml",
        "security/ir.model.access.csv",
        "data/ir_config_parameter.xml",
        "data/ir_cron.xml",
        "views/freshbooks_sync_log_views.xml",
        "views/freshbooks_review_views.xml",
        "views/freshbooks_invoice_views.xml",
        "views/res_partner_views.xml",
        "views/freshbooks_payment_views.xml",
        "views/freshbooks_estimate_views.xml",
        "views/res_config_settings_views.xml",
        "views/freshbooks_menus.xml",
        "views/freshbooks_templates.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "capsule_freshbooks_connector/static/src/**/*",
        ],
        "web.assets_tests": [
            "capsule_freshbooks_connector/static/tests/tours/*.js",
        ],
    },
    "uninstall_hook": "uninstall_hook",
    "installable": True,
    "application": True,
}
