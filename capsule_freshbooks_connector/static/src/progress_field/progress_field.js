import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { standardFieldProps } from "@web/views/fields/standard_field_props";
import { Component, onWillUnmount, onWillUpdateProps, useState } from "@odoo/owl";

/**
 * A sync's progress as the run reports it on the bus ("freshbooks_progress"), live: the value
 * read with the record until the first notification of its run, then each notification's text.
 *
 * On a sync log, the notifications of that log count; with `account_field` (the settings
 * block), those of the FreshBooks connection that field holds.
 */
export class FreshbooksProgressField extends Component {
    static template = "capsule_freshbooks_connector.FreshbooksProgressField";
    static props = { ...standardFieldProps, accountField: { type: String, optional: true } };

    setup() {
        this.state = useState({ live: null });
        this.busService = useService("bus_service");
        this.onProgress = (payload) => {
            if (this.concerns(payload)) {
                this.state.live = payload.text;
            }
        };
        this.busService.subscribe("freshbooks_progress", this.onProgress);
        this.busService.start();
        onWillUnmount(() => this.busService.unsubscribe("freshbooks_progress", this.onProgress));
        onWillUpdateProps((next) => {
            // A reloaded record is as fresh as the last notification.
            if (next.record.data[next.name] !== this.props.record.data[this.props.name]) {
                this.state.live = null;
            }
        });
    }

    concerns(payload) {
        const { record, accountField } = this.props;
        if (!accountField) {
            return record.resId === payload.log_id;
        }
        const account = record.data[accountField];
        return (Array.isArray(account) ? account[0] : account?.id) === payload.account_id;
    }

    get text() {
        return this.state.live ?? this.props.record.data[this.props.name] ?? "";
    }
}

registry.category("fields").add("freshbooks_progress", {
    component: FreshbooksProgressField,
    displayName: _t("FreshBooks sync progress"),
    supportedTypes: ["char"],
    extractProps: ({ options }) => ({ accountField: options.account_field }),
});
