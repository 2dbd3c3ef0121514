from . import test_mapping
from . import test_sync
from . import test_push
from . import test_connect
from . import test_invoices
from . import test_webhook_http
from . import test_connect_http
from . import test_invoices_tour
