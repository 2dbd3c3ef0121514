import { registry } from "@web/core/registry";

// Settings > Integrations > FreshBooks: fill in the app, Connect, consent at the sandbox, back
// connected. The sandbox's consent page is clicked by the sandbox itself in tests (see
// dev/sandbox), so the tour resumes when FreshBooks sends the browser back to Odoo.
registry.category("web_tour.tours").add("freshbooks_connect_tour", {
    url: "/odoo/settings",
    steps: () => [
        {
            content: "The FreshBooks block is in Integrations",
            trigger: "#freshbooks div[name='freshbooks_url'] input",
            run: "edit my.freshbooks.com",
        },
        {
            trigger: "div[name='freshbooks_client_id'] input",
            run: "edit sandbox-client-id",
        },
        {
            trigger: "div[name='freshbooks_client_secret'] input",
            run: "edit sandbox-client-secret",
        },
        {
            content: "The redirect URI to register at FreshBooks is shown",
            trigger: "div[name='freshbooks_redirect_uri']:contains('/freshbooks/oauth/callback')",
        },
        {
            content: "Connect saves what was typed and goes to FreshBooks",
            trigger: "button[name='action_freshbooks_connect']",
            run: "click",
        },
        {
            content: "Back in Odoo, connected to the sandbox business",
            trigger: "div[name='freshbooks_connected'] div[name='freshbooks_business_name']:contains('Sandbox Trading')",
        },
        {
            trigger: "div[name='freshbooks_connected'] div[name='freshbooks_user_name']:contains('owner@sandbox.test')",
        },
    ],
});

// A linked contact shows its FreshBooks invoices and the outstanding total.
registry.category("web_tour.tours").add("freshbooks_invoices_tour", {
    steps: () => [
        {
            content: "The smart button shows the count and what is due",
            trigger: ".oe_stat_button:contains('FreshBooks'):contains('Due')",
        },
        {
            content: "Open the FreshBooks tab",
            trigger: ".o_notebook .nav-link:contains('FreshBooks')",
            run: "click",
        },
        {
            content: "The invoices are listed, newest first",
            trigger: "div[name='freshbooks_invoice_ids'] .o_data_row:first:contains('TOUR-2')",
        },
        {
            trigger: "div[name='freshbooks_invoice_ids'] .o_data_row:contains('TOUR-1')",
        },
        {
            content: "Each invoice opens in FreshBooks",
            trigger: "div[name='freshbooks_invoice_ids'] .o_data_row a[href*='/#/invoice/']",
        },
        {
            content: "Dates are shown whole, not cut off",
            trigger: "div[name='freshbooks_invoice_ids'] .o_data_row:first td[name='due_date']:contains('2026')",
            run() {
                if (this.anchor.scrollWidth > this.anchor.clientWidth) {
                    throw new Error(`The due date is cut off: ${this.anchor.textContent}`);
                }
            },
        },
        {
            content: "Payments are listed beside invoices: date, how, amount",
            trigger: "div[name='freshbooks_payment_ids'] .o_data_row:contains('Cash'):contains('100.00'):contains('TOUR-2')",
        },
        {
            content: "Estimates too, with FreshBooks' own status",
            trigger: "div[name='freshbooks_estimate_ids'] .o_data_row:contains('EST-7'):contains('accepted')",
        },
        {
            content: "Each estimate opens in FreshBooks",
            trigger: "div[name='freshbooks_estimate_ids'] .o_data_row a[href*='/#/estimate/']",
        },
    ],
});

// Settings > Integrations > FreshBooks while a sync runs: its progress, then its summary, appear
// under "Last sync" as the run reports them (the bus), without reloading the page.
registry.category("web_tour.tours").add("freshbooks_progress_tour", {
    url: "/odoo/settings",
    steps: () => [
        {
            content: "Connected: Sync now",
            trigger: "div[name='freshbooks_buttons'] button[name='action_freshbooks_sync_now']",
            run: "click",
        },
        {
            content: "The run's summary arrives live under Last sync",
            trigger: "div[name='freshbooks_last_sync_text'] .o_freshbooks_progress:contains('Done: 3 created')",
        },
        {
            content: "The sync log",
            trigger: "div[name='freshbooks_buttons'] a:contains('Sync log')",
            run: "click",
        },
        {
            trigger: ".o_list_view .o_data_row:first td[name='state']:contains('Done')",
            run: "click",
        },
        {
            content: "The run's log keeps what it read of what FreshBooks had",
            trigger: ".o_form_view div[name='progress_text'] .o_freshbooks_progress:contains('Clients 3 / 3')",
        },
    ],
});
